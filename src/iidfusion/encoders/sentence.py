"""Sentence embeddings with the offline all-MiniLM-L6-v2 (:func:`iidfusion.encoders.text.load_sentence_encoder`).

The package carries the model files (``config.json``, ``model.safetensors``, the tokenizer)
inside site-packages; they are read with ``local_files_only=True``, so a real pretrained text
pipeline runs with no download and no Hub access. The sentence-transformers recipe is
reproduced with plain ``transformers``: mean pooling over the tokens, then L2 normalisation
(the model's ``modules.json``), 384 features, texts truncated at 256 tokens
(``sentence_bert_config.json``). As a :class:`TextEncoder` it can also be fine-tuned.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
from torch import Tensor

from iidfusion.encoders.text import SENTENCE_DIM, TextEncoder, TextTokenizer, load_sentence_encoder


@functools.lru_cache(maxsize=1)
def _frozen_sentence_encoder() -> tuple[TextEncoder, TextTokenizer]:
    """One shared inference copy, so repeated :func:`encode_sentences` calls load the model once."""
    encoder, tokenizer = load_sentence_encoder()
    return encoder.eval().requires_grad_(False), tokenizer


@torch.no_grad()
def encode_sentences(texts: Sequence[str], *, batch_size: int = 64, device: str | torch.device | None = None) -> Tensor:
    """Embed ``texts`` with all-MiniLM-L6-v2: a (N, 384) float32 tensor of unit-norm rows, on the CPU.

    Runs on ``device`` (CPU by default) and leaves the shared model there.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if len(texts) == 0:
        return torch.empty(0, SENTENCE_DIM)
    encoder, tokenizer = _frozen_sentence_encoder()
    device = torch.device(device or "cpu")
    encoder.to(device)
    chunks = []
    for start in range(0, len(texts), batch_size):
        tokens = tokenizer.batch(list(texts[start : start + batch_size]))
        chunks.append(encoder({key: value.to(device) for key, value in tokens.items()}).float().cpu())
    return torch.cat(chunks)
