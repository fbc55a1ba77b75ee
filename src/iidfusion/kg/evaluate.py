"""Filtered link-prediction ranks, MRR and Hits@k in both directions (Bordes et al., 2013).

Each test triple (h, r, t) gives two queries, both answered by 1-N scoring of the tail:
(h, r, ?) with answer t and, through the reciprocal relation, (t, r + R, ?) with answer h.
"Filtered": every other entity that forms a known true triple with the query (in train,
valid or test) is removed from the candidates before ranking the answer.

Ties between the answer and other candidates are resolved by an explicit policy:

* ``"pessimistic"`` (the default, what OTKGE and the KBC code count: rank = 1 + #{score >= s}):
  the answer ranks after every candidate with the same score. It is the policy behind the
  numbers the paper compares with, and the only one a constant scorer cannot exploit.
* ``"optimistic"``: rank = 1 + #{score > s}.
* ``"realistic"``: the expected rank under a uniformly random order of the tied candidates,
  the mean of the two above (PyKEEN's default rank).

Everything is vectorised over a batch of queries; the filter is stored as CSR rows keyed by
(entity, relation) and expanded into a (B, N) mask per batch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn

from iidfusion.fusion.base import at_test_time
from iidfusion.kg.data import KnowledgeGraph, with_reciprocals

TiePolicy = Literal["pessimistic", "realistic", "optimistic"]
TIE_POLICIES: tuple[str, ...] = ("pessimistic", "realistic", "optimistic")
DEFAULT_TIE_POLICY: TiePolicy = "pessimistic"
HITS_AT: tuple[int, ...] = (1, 3, 10)

# (B, 2) queries (entity, relation incl. reciprocal ids) -> (B, N) candidate scores.
QueryScorer = Callable[[Tensor], Tensor]


class KnownTails:
    """For every (entity, relation) query, the tails of all known triples, as CSR rows.

    Built from the triples of all splits with reciprocals, so (t, r + R) lists every known head.
    """

    def __init__(self, triples: Iterable[Tensor], num_entities: int, num_relations: int) -> None:
        known = with_reciprocals(torch.cat(list(triples), dim=0), num_relations)
        self.num_entities = int(num_entities)
        self.num_query_relations = 2 * int(num_relations)
        keys = known[:, 0] * self.num_query_relations + known[:, 1]
        # Sort by key then tail; duplicates of a triple across splits are harmless in a mask.
        order = torch.argsort(keys * self.num_entities + known[:, 2])
        self.keys, self.tails = keys[order], known[order, 2]

    @classmethod
    def from_kg(cls, kg: KnowledgeGraph) -> KnownTails:
        return cls([kg.train, kg.valid, kg.test], kg.num_entities, kg.num_relations)

    def to(self, device: torch.device | str) -> KnownTails:
        """Move the index to ``device`` (in place), so masks are built where the scores live."""
        self.keys, self.tails = self.keys.to(device), self.tails.to(device)
        return self

    def mask(self, queries: Tensor) -> Tensor:
        """(B, N) bool, on the index's device: True where (query entity, relation, candidate) is known."""
        keys = (queries[:, 0] * self.num_query_relations + queries[:, 1]).to(self.keys.device)
        start = torch.searchsorted(self.keys, keys, side="left")
        stop = torch.searchsorted(self.keys, keys, side="right")
        counts = stop - start
        rows = torch.repeat_interleave(torch.arange(len(keys), device=keys.device), counts)
        # Position of each kept entry inside its row, to offset from that row's start.
        offsets = torch.arange(int(counts.sum()), device=keys.device) - torch.repeat_interleave(
            torch.cumsum(counts, 0) - counts, counts
        )
        cols = self.tails[torch.repeat_interleave(start, counts) + offsets]
        mask = torch.zeros(len(keys), self.num_entities, dtype=torch.bool, device=keys.device)
        mask[rows, cols] = True
        return mask


def filtered_ranks(
    scores: Tensor, answers: Tensor, known: Tensor, tie_policy: TiePolicy = DEFAULT_TIE_POLICY
) -> Tensor:
    """Filtered rank (float, 1 = best) of ``answers`` (B,) among ``scores`` (B, N).

    ``known`` (B, N) bool marks the true candidates to filter out; the answer itself is never
    filtered. NaN scores are an error: a NaN would silently rank anywhere.
    """
    if tie_policy not in TIE_POLICIES:
        raise ValueError(f"unknown tie policy {tie_policy!r}; expected one of {list(TIE_POLICIES)}")
    if scores.ndim != 2 or answers.shape != scores.shape[:1] or known.shape != scores.shape:
        raise ValueError(
            f"need scores (B, N), answers (B,), known (B, N); got {tuple(scores.shape)}, "
            f"{tuple(answers.shape)}, {tuple(known.shape)}"
        )
    if torch.isnan(scores).any():
        raise ValueError("scores contain NaN; cannot rank")
    rows = torch.arange(len(answers), device=scores.device)
    answer_scores = scores[rows, answers].unsqueeze(1)
    candidates = ~known
    candidates[rows, answers] = False
    better = ((scores > answer_scores) & candidates).sum(dim=1)
    tied = ((scores == answer_scores) & candidates).sum(dim=1)
    optimistic = 1.0 + better.double()
    if tie_policy == "optimistic":
        return optimistic
    if tie_policy == "pessimistic":
        return optimistic + tied.double()
    return optimistic + 0.5 * tied.double()


@dataclass
class LinkPredictionMetrics:
    """MRR and Hits@k over both directions; ``per_direction`` keeps tail (``rhs``) and head (``lhs``)."""

    mrr: float
    hits: dict[int, float]
    num_queries: int
    tie_policy: str
    per_direction: dict[str, dict[str, float]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, float]:
        """Flat ``{"mrr": ..., "hits@1": ...}``: the columns of the result tables."""
        return {"mrr": self.mrr} | {f"hits@{k}": v for k, v in self.hits.items()}


def metrics_from_ranks(ranks: Tensor, hits_at: Sequence[int] = HITS_AT) -> dict[str, float]:
    """``{"mrr", "hits@k"...}`` of a 1-D tensor of ranks (float)."""
    if ranks.numel() == 0:
        raise ValueError("no ranks to summarise (empty split)")
    return {"mrr": float((1.0 / ranks).mean())} | {f"hits@{k}": float((ranks <= k).double().mean()) for k in hits_at}


def rank_queries(
    scorer: QueryScorer,
    triples: Tensor,
    known: KnownTails,
    *,
    num_relations: int,
    batch_size: int = 1024,
    tie_policy: TiePolicy = DEFAULT_TIE_POLICY,
) -> tuple[Tensor, Tensor]:
    """Filtered ranks of the tails (h, r, ?) and of the heads (t, r + R, ?) of ``triples``, each (n,)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    queries = with_reciprocals(triples, num_relations)
    ranks = []
    for begin in range(0, len(queries), batch_size):
        batch = queries[begin : begin + batch_size]
        scores = scorer(batch[:, :2])
        answers = batch[:, 2].to(scores.device)
        ranks.append(filtered_ranks(scores, answers, known.mask(batch).to(scores.device), tie_policy).cpu())
    all_ranks = torch.cat(ranks) if ranks else torch.empty(0, dtype=torch.double)
    return all_ranks[: len(triples)], all_ranks[len(triples) :]


def evaluate_link_prediction(
    scorer: QueryScorer,
    kg: KnowledgeGraph,
    split: str,
    *,
    known: KnownTails | None = None,
    batch_size: int = 1024,
    tie_policy: TiePolicy = DEFAULT_TIE_POLICY,
    hits_at: Sequence[int] = HITS_AT,
) -> LinkPredictionMetrics:
    """Filtered MRR / Hits@k of ``scorer`` on ``split``, both directions pooled (as OTKGE averages them).

    The test split is ranked at test time (:func:`~iidfusion.fusion.at_test_time`: a fusion
    strategy's test-only step, such as PDF's calibration, applies), validation is not.
    """
    known = known if known is not None else KnownTails.from_kg(kg)
    test_time = at_test_time(scorer) if split == "test" and isinstance(scorer, nn.Module) else contextlib.nullcontext()
    with torch.no_grad(), test_time:
        tail_ranks, head_ranks = rank_queries(
            scorer, kg.split(split), known, num_relations=kg.num_relations, batch_size=batch_size, tie_policy=tie_policy
        )
    pooled = metrics_from_ranks(torch.cat([tail_ranks, head_ranks]), hits_at)
    return LinkPredictionMetrics(
        mrr=pooled["mrr"],
        hits={k: pooled[f"hits@{k}"] for k in hits_at},
        num_queries=2 * len(tail_ranks),
        tie_policy=tie_policy,
        per_direction={"rhs": metrics_from_ranks(tail_ranks, hits_at), "lhs": metrics_from_ranks(head_ranks, hits_at)},
    )
