"""Run by `.ci/core_install` in a venv holding only `pip install iidfusion` (torch, numpy).

The losses, the transport and the fusion model must import and train without any extra: no
Lightning, torchmetrics, matplotlib, tensorboard, POT, scipy or yaml, neither installed nor imported.
"""

import importlib.util
import sys

import torch

import iidfusion
from iidfusion.fusion import FusionModel, get_method
from iidfusion.losses import IIDLoss, distribution_coherence
from iidfusion.ot import FourierRIPReducer, sinkhorn_unbalanced, wasserstein_sliced

EXTRAS = ("lightning", "torchmetrics", "matplotlib", "tensorboard", "ot", "scipy", "yaml")

installed = [name for name in EXTRAS if importlib.util.find_spec(name) is not None]
assert not installed, f"the core install brought {installed}"

torch.manual_seed(0)
x, y = torch.randn(16, 4), torch.randn(20, 4) + 1.0
cost = torch.cdist(x, y)
result = sinkhorn_unbalanced(cost, eps=0.1, rho=10.0)
assert torch.isfinite(result.value), result
assert float(wasserstein_sliced(x, y, n_projections=16, generator=torch.Generator().manual_seed(0))) > 0
reduced = FourierRIPReducer(4, 2, 3)(x)
assert reduced.shape == (16, 3)

spec = get_method("iid-p")
model = spec.build_model({"a": torch.nn.Identity(), "b": torch.nn.Identity()}, {"a": 4, "b": 6}, 3, width=8)
loss = IIDLoss.from_method(spec, alpha=0.1, beta=0.1, feature_dim=8)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
inputs, labels = {"a": torch.randn(32, 4), "b": torch.randn(32, 6)}, torch.randint(0, 3, (32,))
totals = []
for _ in range(5):
    output = model(inputs)
    terms = loss(output, labels, strategy=model.strategy)
    optimizer.zero_grad()
    terms.total.backward()
    optimizer.step()
    totals.append(terms.total.item())
assert all(map(torch.isfinite, map(torch.tensor, totals))) and totals[-1] < totals[0], totals
assert set(terms.terms) >= {"task", "informatic", "coherence"}, terms.terms
assert distribution_coherence(output.features).loss.item() >= 0

loaded = [name for name in EXTRAS if name in sys.modules]
assert not loaded, f"the core modules imported {loaded}"
print(f"core install of iidfusion {iidfusion.__version__}: losses, ot and fusion run without extras; total {totals[0]:.4f} -> {totals[-1]:.4f}")
