"""core.output: the FusionOutput the objectives read, and the one method they need of a strategy.

The losses read only a FusionOutput (docs/architecture.md, data flow): one built by hand, with no
fusion model at all, is enough, and L_ic reads the shared head's g(z^m), never the unimodal heads.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import Tensor

from iidfusion.core.output import FusionOutput
from iidfusion.losses import IIDLoss

MODALITIES = ("image", "text")
BATCH, CLASSES, WIDTH = 6, 3, 4


def hand_made_output(seed: int = 0) -> FusionOutput:
    """A FusionOutput of IF made of random tensors, as a model of another task (the KG's) builds it."""
    generator = torch.Generator().manual_seed(seed)

    def draw(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=generator)

    weights = torch.full((BATCH, len(MODALITIES)), 0.5)
    features = {m: draw(BATCH, WIDTH) for m in MODALITIES}
    return FusionOutput(
        logits=draw(BATCH, CLASSES),
        unimodal_logits={m: draw(BATCH, CLASSES) for m in MODALITIES},
        shared_head_logits={m: draw(BATCH, CLASSES) for m in MODALITIES},
        features=features,
        fused_features=sum(0.5 * features[m] for m in MODALITIES),
        weights=weights,
        modalities=MODALITIES,
        mode="if",
    )


LABELS = torch.tensor([0, 1, 2, 0, 1, 2])


def test_the_fields_are_those_the_docstring_lists_in_order():
    assert [f.name for f in dataclasses.fields(FusionOutput)] == [
        "logits",
        "unimodal_logits",
        "shared_head_logits",
        "features",
        "fused_features",
        "weights",
        "modalities",
        "mode",
    ]


def test_the_objective_needs_nothing_but_a_fusion_output():
    output = hand_made_output()
    result = IIDLoss(0.5, 0.25, feature_dim=WIDTH)(output, LABELS)
    assert set(result.terms) == {"task", "informatic", "coherence"}
    torch.testing.assert_close(result.terms["task"], F.cross_entropy(output.logits, LABELS))
    expected = result.terms["task"] + 0.5 * result.terms["informatic"] + 0.25 * result.terms["coherence"]
    torch.testing.assert_close(result.total, expected)


def test_the_informatic_constraint_reads_the_shared_head_logits_not_the_unimodal_heads():
    output = hand_made_output()
    loss = IIDLoss(1.0, 0.0)
    reference = loss(output, LABELS).terms["informatic"]
    other_heads = dataclasses.replace(output, unimodal_logits={m: 100 * v for m, v in output.unimodal_logits.items()})
    assert torch.equal(loss(other_heads, LABELS).terms["informatic"], reference)
    other_shared = dataclasses.replace(
        output, shared_head_logits={m: v.flip(0) for m, v in output.shared_head_logits.items()}
    )
    assert not torch.equal(loss(other_shared, LABELS).terms["informatic"], reference)


class CountingProvider:
    """An auxiliary-loss provider that is no FusionStrategy (nor a module): the protocol is all the loss needs."""

    def __init__(self) -> None:
        self.calls: list[tuple[FusionOutput, Tensor, Tensor | None]] = []

    def auxiliary_losses(self, output: FusionOutput, labels: Tensor, index: Tensor | None = None) -> dict[str, Tensor]:
        self.calls.append((output, labels, index))
        return {"spread": output.weights.std(), "fixed": torch.tensor(0.75)}


def test_any_auxiliary_loss_provider_adds_its_terms_as_they_are():
    output = hand_made_output()
    provider = CountingProvider()
    index = torch.arange(BATCH)
    result = IIDLoss(0.0, 0.0)(output, LABELS, index, strategy=provider)
    ((seen_output, seen_labels, seen_index),) = provider.calls
    assert seen_output is output and torch.equal(seen_labels, LABELS) and seen_index is index
    assert float(result.terms["strategy/fixed"]) == 0.75 and float(result.terms["strategy/spread"]) == 0.0
    torch.testing.assert_close(result.total, F.cross_entropy(output.logits, LABELS) + 0.75)
