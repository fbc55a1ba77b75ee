"""A small MLP encoder for feature views (the multi-view ``.mat`` / ``.npz`` data sets).

Feature views are already descriptors (Fourier coefficients, Zernike moments, pooled CNN or
BERT features), so an encoder h_m only needs a few layers; the fusion model then projects
its output to the common width d (docs/method.md, "The fusion model").
"""

from __future__ import annotations

from torch import Tensor, nn


class MLPEncoder(nn.Module):
    """``layers`` hidden layers of ``hidden`` units (Linear, LayerNorm, ReLU, Dropout).

    ``layers=0`` is the identity (the fusion model's projection is then the only map).
    ``output_dim`` is the width of the encoder's output, which the fusion model projects.
    LayerNorm, not BatchNorm: the output of a sample must not depend on its batch, so
    evaluation under noise and DDP shards behave the same as training.
    """

    def __init__(self, input_dim: int, hidden: int = 128, layers: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        if input_dim < 1 or hidden < 1 or layers < 0:
            raise ValueError(
                f"MLPEncoder needs input_dim >= 1, hidden >= 1, layers >= 0; got {input_dim}, {hidden}, {layers}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
        blocks: list[nn.Module] = []
        width = input_dim
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden), nn.LayerNorm(hidden), nn.ReLU(), nn.Dropout(dropout)]
            width = hidden
        self.net = nn.Sequential(*blocks)
        self.output_dim = width

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 2:
            raise ValueError(f"MLPEncoder expects (batch, features), got shape {tuple(x.shape)}")
        return self.net(x)
