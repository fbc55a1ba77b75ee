"""Encoders h_m that map one modality's raw input to a feature vector (docs/method.md, "The fusion model";
docs/reproduce.md, "Data").

* :mod:`~iidfusion.encoders.resnet`: ResNet-18 ... 152 with torchvision's ``state_dict`` keys.
* :mod:`~iidfusion.encoders.image`: :class:`ImageEncoder` (a ResNet trunk pooled to 1 or 3
  regions) and the originals' image transforms.
* :mod:`~iidfusion.encoders.text`: :class:`TextEncoder` (a local Hugging Face model, or a
  random BERT with a vocabulary built from the training texts) and :class:`TextTokenizer`.
* :mod:`~iidfusion.encoders.sentence`: the bundled all-MiniLM-L6-v2, offline.
* :mod:`~iidfusion.encoders.mlp`: :class:`MLPEncoder` for feature views.

Every encoder has an ``output_dim`` attribute, the ``encoder_dims`` entry of its modality in
:class:`iidfusion.fusion.FusionModel`.
"""

from iidfusion.encoders.image import ImageEncoder, ImageTransform
from iidfusion.encoders.resnet import ResNet, build_resnet, load_resnet_weights
from iidfusion.encoders.sentence import encode_sentences
from iidfusion.encoders.text import (
    RandomTextConfig,
    TextEncoder,
    TextTokenizer,
    load_sentence_encoder,
    load_text_encoder,
)

__all__ = [
    "ImageEncoder",
    "ImageTransform",
    "RandomTextConfig",
    "ResNet",
    "TextEncoder",
    "TextTokenizer",
    "build_resnet",
    "encode_sentences",
    "load_resnet_weights",
    "load_sentence_encoder",
    "load_text_encoder",
]
