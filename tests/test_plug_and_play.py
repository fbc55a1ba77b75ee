"""The plug-and-play example of the README and docs/method.md ("Plug-and-play"): L_ic and L_dc in a
user's own two-encoder model, without FusionModel. The documented snippet itself is run, and the
two documents show the same one."""

import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import iidfusion
from iidfusion.data.features.synthetic import SyntheticConfig, generate_synthetic
from iidfusion.engine.distributed import GatheredCoherence
from iidfusion.losses import DistributionCoherence

REPO = Path(__file__).resolve().parents[1]


def _snippet(document: str) -> str:
    """The python block of ``document`` that imports the regularizers from iidfusion.losses."""
    blocks = re.findall(r"```python\n(.*?)```", (REPO / document).read_text(), flags=re.DOTALL)
    (snippet,) = [b for b in blocks if b.startswith("from iidfusion.losses import DistributionCoherence")]
    return snippet


def test_the_documented_snippet_trains_a_hand_written_two_encoder_model():
    snippet = _snippet("README.md")
    assert _snippet("docs/method.md") == snippet
    assert "cross_entropy" not in snippet, "L_ic holds the task CE: the snippet must not add it a second time"
    torch.manual_seed(0)
    data = generate_synthetic(SyntheticConfig(num_classes=3, shift=2.0), num_samples=256, seed=0)
    one_epoch = [
        (data.views["m0"][i : i + 64], data.views["m1"][i : i + 64], data.labels[i : i + 64]) for i in range(0, 256, 64)
    ]
    history = []

    class Recording(list):
        """The loader: each batch handed out records the previous step's losses."""

        def __iter__(self):
            for batch in super().__iter__():
                yield batch
                history.append((names["loss"].item(), names["ic"].item(), names["dc"].item()))

    names = {"torch": torch, "nn": nn, "F": F, "loader": Recording(one_epoch * 3)}
    exec(compile(snippet, "README.md (plug-and-play)", "exec"), names)
    values = torch.tensor(history)
    assert len(history) == 12 and torch.isfinite(values).all()
    assert (values[0] != values[-1]).all(), "every loss must move when the model trains"
    assert values[-4:, 0].mean() < values[:4, 0].mean(), "training must lower the total loss"


def test_gathered_coherence_is_exported_and_is_plain_l_dc_on_one_process():
    assert iidfusion.GatheredCoherence is GatheredCoherence and "GatheredCoherence" in iidfusion.__all__
    torch.manual_seed(0)
    features = {"a": torch.randn(16, 8), "b": torch.randn(16, 8) + 1}
    torch.manual_seed(1)
    gathered = GatheredCoherence(dim=8)(features).loss
    torch.manual_seed(1)
    assert torch.equal(gathered, DistributionCoherence(dim=8)(features).loss)
