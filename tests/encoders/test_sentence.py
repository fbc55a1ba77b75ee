"""The bundled all-MiniLM-L6-v2 runs offline and gives sentence-transformers' embeddings."""

from __future__ import annotations

import pytest
import torch

from iidfusion.encoders.sentence import encode_sentences
from iidfusion.encoders.text import SENTENCE_DIM, load_sentence_encoder


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


def test_encode_sentences_offline_384_unit_norm_and_semantic() -> None:
    texts = ["A man is eating food.", "A man is eating a piece of bread.", "The stock market fell sharply today."]
    embeddings = encode_sentences(texts, batch_size=2)
    assert embeddings.shape == (3, SENTENCE_DIM) == (3, 384)
    assert embeddings.dtype == torch.float32
    torch.testing.assert_close(embeddings.norm(dim=1), torch.ones(3))
    similarity = embeddings @ embeddings.T
    # A pretrained encoder puts the two sentences about eating closer than the unrelated one.
    assert similarity[0, 1] > similarity[0, 2] + 0.3


def test_sentence_encoder_is_a_text_encoder_with_fixed_length_tokens() -> None:
    encoder, tokenizer = load_sentence_encoder(max_length=16)
    tokens = tokenizer.batch(["short", "a somewhat longer sentence with more words in it"])
    assert tokens["input_ids"].shape == (2, 16)
    assert encoder.output_dim == SENTENCE_DIM
    assert encoder.describe()["type"] == "all-MiniLM-L6-v2"
    with torch.no_grad():
        out = encoder(tokens)
    assert out.shape == (2, SENTENCE_DIM)
    assert torch.isfinite(out).all()


def test_encode_sentences_empty_and_bad_batch_size() -> None:
    assert encode_sentences([]).shape == (0, SENTENCE_DIM)
    with pytest.raises(ValueError, match="batch_size"):
        encode_sentences(["x"], batch_size=0)
