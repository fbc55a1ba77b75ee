"""The plug-and-play example of docs/method.md ("Plug-and-play"): L_ic and L_dc in a user's own
two-encoder model, without FusionModel. The block between the markers is the documented snippet."""

import torch
import torch.nn.functional as F
from torch import nn

from iidfusion.data.features.synthetic import SyntheticConfig, generate_synthetic


def test_regularizers_plug_into_a_hand_written_two_encoder_model():
    torch.manual_seed(0)
    data = generate_synthetic(SyntheticConfig(num_classes=3, shift=2.0), num_samples=256, seed=0)
    one_epoch = [
        (data.views["m0"][i : i + 64], data.views["m1"][i : i + 64], data.labels[i : i + 64]) for i in range(0, 256, 64)
    ]
    loader = one_epoch * 3
    history = []

    # --- snippet (docs/method.md, "Plug-and-play") ---
    from iidfusion.losses import DistributionCoherence, InformaticConstraint

    enc_a, enc_b = nn.Sequential(nn.Linear(32, 16), nn.ReLU()), nn.Sequential(nn.Linear(32, 16), nn.ReLU())
    head = nn.Linear(16, 3)  # the linear target mapping g
    l_ic = InformaticConstraint(lam=0.1)  # L_ic, docs/method.md
    l_dc = DistributionCoherence(dim=16)  # L_dc, docs/method.md
    optimizer = torch.optim.Adam([*enc_a.parameters(), *enc_b.parameters(), *head.parameters()], lr=1e-2)
    for xa, xb, y in loader:
        za, zb = enc_a(xa), enc_b(xb)
        z = 0.5 * za + 0.5 * zb  # intermediate fusion
        ic = l_ic(head(z), {"a": head(za), "b": head(zb)}, z, {"a": za, "b": zb}, y).loss
        dc = l_dc({"a": za, "b": zb}).loss
        loss = F.cross_entropy(head(z), y) + 0.1 * ic + 0.1 * dc
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        # --- end of snippet ---
        history.append((loss.item(), ic.item(), dc.item()))

    values = torch.tensor(history)
    assert torch.isfinite(values).all()
    assert (values[0] != values[-1]).all(), "every loss must move when the model trains"
    assert values[-4:, 0].mean() < values[:4, 0].mean(), "training must lower the total loss"
