import math

import pytest
import torch

from iidfusion.kg.data import KnowledgeGraph
from iidfusion.kg.evaluate import (
    KnownTails,
    evaluate_link_prediction,
    filtered_ranks,
    metrics_from_ranks,
    rank_queries,
)


def small_graph(seed: int = 0, num_entities: int = 9, num_relations: int = 2, per_split: int = 14) -> KnowledgeGraph:
    """A random graph with many shared (h, r) queries, so the filter matters."""
    generator = torch.Generator().manual_seed(seed)
    triples = torch.unique(
        torch.stack(
            [
                torch.randint(0, num_entities, (3 * per_split,), generator=generator),
                torch.randint(0, num_relations, (3 * per_split,), generator=generator),
                torch.randint(0, num_entities, (3 * per_split,), generator=generator),
            ],
            dim=1,
        ),
        dim=0,
    )
    triples = triples[torch.randperm(len(triples), generator=generator)]
    third = len(triples) // 3
    return KnowledgeGraph(
        "random",
        tuple(f"e{i}" for i in range(num_entities)),
        tuple(f"r{k}" for k in range(num_relations)),
        triples[third:],
        triples[:third],
        triples[third : 2 * third],
    )


def brute_force_rank(scores: torch.Tensor, answer: int, known: set[int], policy: str) -> float:
    """Rank by explicit loops over the candidates: the definition, nothing vectorised."""
    target = float(scores[answer])
    better = tied = 0
    for candidate in range(len(scores)):
        if candidate == answer or candidate in known:
            continue
        value = float(scores[candidate])
        better += value > target
        tied += value == target
    return {"optimistic": 1 + better, "pessimistic": 1 + better + tied, "realistic": 1 + better + tied / 2}[policy]


def known_set(kg: KnowledgeGraph, entity: int, relation: int) -> set[int]:
    """Every true answer of (entity, relation, ?) with reciprocal relations, by scanning all triples."""
    answers = set()
    for h, r, t in torch.cat([kg.train, kg.valid, kg.test]).tolist():
        if (h, r) == (entity, relation):
            answers.add(t)
        if (t, r + kg.num_relations) == (entity, relation):
            answers.add(h)
    return answers


@pytest.mark.parametrize("policy", ["optimistic", "pessimistic", "realistic"])
def test_ranks_match_brute_force_with_ties(policy):
    kg = small_graph()
    known = KnownTails.from_kg(kg)
    # Scores drawn from 3 values: ties everywhere, in both directions.
    generator = torch.Generator().manual_seed(1)
    table = torch.randint(0, 3, (kg.num_entities, 2 * kg.num_relations, kg.num_entities), generator=generator).float()

    def scorer(queries):
        return table[queries[:, 0], queries[:, 1]]

    tail_ranks, head_ranks = rank_queries(
        scorer, kg.test, known, num_relations=kg.num_relations, batch_size=4, tie_policy=policy
    )
    for i, (h, r, t) in enumerate(kg.test.tolist()):
        expected_tail = brute_force_rank(table[h, r], t, known_set(kg, h, r) - {t}, policy)
        expected_head = brute_force_rank(
            table[t, r + kg.num_relations], h, known_set(kg, t, r + kg.num_relations) - {h}, policy
        )
        assert tail_ranks[i].item() == expected_tail
        assert head_ranks[i].item() == expected_head
    # The ties make the policies differ on this graph; the assertions above can tell them apart.
    other = rank_queries(scorer, kg.test, known, num_relations=kg.num_relations, tie_policy="optimistic")[0]
    if policy != "optimistic":
        assert (tail_ranks > other).any()


def test_ranks_agree_with_pykeen():
    from pykeen.evaluation.ranks import Ranks

    kg = small_graph(seed=3)
    known = KnownTails.from_kg(kg)
    scores = torch.randint(0, 4, (len(kg.test), kg.num_entities), generator=torch.Generator().manual_seed(0)).float()
    queries = kg.test[:, :2]
    answers = kg.test[:, 2]
    mask = known.mask(queries)
    rows = torch.arange(len(answers))
    # PyKEEN's filtered protocol: filtered candidates get NaN, the true score stays in.
    filtered = scores.clone()
    filtered[mask] = math.nan
    filtered[rows, answers] = scores[rows, answers]
    reference = Ranks.from_scores(scores[rows, answers].unsqueeze(1), filtered)
    for policy in ("optimistic", "pessimistic", "realistic"):
        ours = filtered_ranks(scores, answers, mask, policy)
        assert torch.equal(ours, getattr(reference, policy).double()), policy


def test_filter_mask_lists_every_known_answer_both_directions():
    kg = small_graph(seed=5)
    known = KnownTails.from_kg(kg)
    queries = torch.tensor([[e, r] for e in range(kg.num_entities) for r in range(2 * kg.num_relations)])
    mask = known.mask(queries)
    for row, (e, r) in enumerate(queries.tolist()):
        assert set(mask[row].nonzero().flatten().tolist()) == known_set(kg, e, r)


def test_metrics_and_perfect_scorer():
    ranks = torch.tensor([1.0, 2.0, 4.0, 20.0])
    metrics = metrics_from_ranks(ranks)
    assert metrics["mrr"] == pytest.approx((1 + 0.5 + 0.25 + 0.05) / 4)
    assert (metrics["hits@1"], metrics["hits@3"], metrics["hits@10"]) == (0.25, 0.5, 0.75)

    kg = small_graph(seed=7)
    truth = KnownTails.from_kg(kg)

    def oracle(queries):
        # Every known answer scores 1: filtered ranking must still give each answer rank 1.
        return truth.mask(queries).float()

    result = evaluate_link_prediction(oracle, kg, "test", batch_size=3)
    assert result.mrr == 1.0 and result.hits[1] == 1.0
    assert result.num_queries == 2 * len(kg.test)

    def constant(queries):
        return torch.zeros(len(queries), kg.num_entities)

    # A constant scorer gains nothing from the pessimistic default: rank = number of unfiltered candidates.
    flat = evaluate_link_prediction(constant, kg, "test")
    assert flat.tie_policy == "pessimistic"
    assert flat.mrr < 0.5 and flat.hits[1] < 0.5


def test_bad_inputs():
    scores = torch.zeros(2, 4)
    with pytest.raises(ValueError, match="tie policy"):
        filtered_ranks(scores, torch.tensor([0, 1]), torch.zeros(2, 4, dtype=torch.bool), "average")
    with pytest.raises(ValueError, match="NaN"):
        filtered_ranks(torch.full((2, 4), math.nan), torch.tensor([0, 1]), torch.zeros(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="shape|need"):
        filtered_ranks(scores, torch.tensor([0]), torch.zeros(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="empty"):
        metrics_from_ranks(torch.empty(0))
