import pytest
import torch

from iidfusion.encoders.mlp import MLPEncoder


def test_shapes_and_identity():
    x = torch.randn(5, 7)
    assert MLPEncoder(7, hidden=16, layers=2).output_dim == 16
    assert MLPEncoder(7, hidden=16, layers=2)(x).shape == (5, 16)
    identity = MLPEncoder(7, layers=0)
    assert identity.output_dim == 7 and torch.equal(identity(x), x)


def test_a_sample_does_not_depend_on_its_batch():
    encoder = MLPEncoder(7, hidden=16, layers=1).eval()
    x = torch.randn(6, 7)
    assert torch.allclose(encoder(x)[:2], encoder(x[:2]), atol=1e-6)


@pytest.mark.parametrize(
    ("args", "message"), [((0,), "input_dim"), ((4, 8, -1), "layers"), ((4, 8, 1, 1.0), "dropout")]
)
def test_bad_arguments(args, message):
    with pytest.raises(ValueError, match=message):
        MLPEncoder(*args)


def test_bad_input_shape():
    with pytest.raises(ValueError, match=r"expects \(batch, features\)"):
        MLPEncoder(4)(torch.randn(2, 3, 4))
