"""Text encoders: the random offline stand-in, local Hugging Face folders, pooling and trimming."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from iidfusion.encoders.text import (
    RandomTextConfig,
    TextEncoder,
    build_wordpiece_vocab,
    load_text_encoder,
    wordpiece_tokenizer,
)

TINY = RandomTextConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64)
CORPUS = ["The cat sat on the mat.", "A dog barked at the cat!", "Rainy days in Paris"]


def test_wordpiece_vocab_is_deterministic_and_spells_unseen_words() -> None:
    vocab = build_wordpiece_vocab(CORPUS)
    assert vocab[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert vocab == build_wordpiece_vocab(list(reversed(CORPUS)))
    assert "the" in vocab and "cat" in vocab and "##t" in vocab
    # "the" occurs three times, "cat" twice: they come first among the words, most frequent first.
    words = [token for token in vocab[5:] if len(token) > 1 and not token.startswith("##")]
    assert words[:2] == ["the", "cat"]
    tokenizer = wordpiece_tokenizer(vocab, max_length=12)
    ids = tokenizer("cats")["input_ids"].tolist()
    assert ids[0] == vocab.index("[CLS]") and vocab.index("[UNK]") not in ids[:4]  # cat + ##s
    with pytest.raises(ValueError, match="no words"):
        build_wordpiece_vocab(["", "   "])


def test_random_encoder_warns_and_encodes_fixed_length_batches() -> None:
    with pytest.warns(UserWarning, match="randomly initialised BERT"):
        encoder, tokenizer = load_text_encoder(None, corpus=CORPUS, max_length=16, random_config=TINY)
    tokens = tokenizer.batch(["the cat", "a dog barked at the cat on the mat"])
    assert set(tokens) >= {"input_ids", "attention_mask"}
    assert tokens["input_ids"].shape == (2, 16) and tokens["input_ids"].dtype == torch.long
    encoder.eval()
    with torch.no_grad():
        out = encoder(tokens)
        # Trimming to the longest text changes nothing: padding is masked.
        longer = {k: torch.cat([v, torch.zeros_like(v)], dim=1) for k, v in tokens.items()}
        torch.testing.assert_close(encoder(longer), out)
    assert out.shape == (2, 32) == (2, encoder.output_dim)
    assert encoder.describe()["type"] == "random-bert" and encoder.describe()["vocab"] == tokenizer.fingerprint()


def test_random_encoder_is_seeded() -> None:
    with pytest.warns(UserWarning):
        a, tok = load_text_encoder("random", corpus=CORPUS, max_length=8, random_config=TINY)
        b, _ = load_text_encoder("random", corpus=CORPUS, max_length=8, random_config=TINY)
    tokens = tok.batch(["rainy cat"])
    with torch.no_grad():
        torch.testing.assert_close(a.eval()(tokens), b.eval()(tokens))


def test_poolings_and_input_validation() -> None:
    with pytest.warns(UserWarning):
        encoder, tokenizer = load_text_encoder(None, corpus=CORPUS, max_length=8, random_config=TINY)
    tokens = tokenizer.batch(["the cat", "dog"])
    model = encoder.model.eval()
    with torch.no_grad():
        hidden = model(**{k: v[:, :4] for k, v in tokens.items()}).last_hidden_state  # longest text: 4 tokens
        cls = TextEncoder(model, pooling="cls")(tokens)
        mean = TextEncoder(model, pooling="mean", normalize=True)(tokens)
    torch.testing.assert_close(cls, hidden[:, 0])
    mask = tokens["attention_mask"][:, :4].unsqueeze(-1).float()
    expected = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    torch.testing.assert_close(mean, expected)
    with pytest.raises(ValueError, match="unknown pooling"):
        TextEncoder(model, pooling="max")
    with pytest.raises(ValueError, match="input_ids"):
        encoder({"input_ids": tokens["input_ids"]})


def test_local_huggingface_directory_round_trip(tmp_path: Path) -> None:
    with pytest.warns(UserWarning):
        source, tokenizer = load_text_encoder(None, corpus=CORPUS, max_length=10, random_config=TINY)
    source.model.save_pretrained(tmp_path)
    tokenizer.save(tmp_path)
    encoder, loaded = load_text_encoder(tmp_path, max_length=10)
    assert encoder.pooling == "pooler"
    assert loaded.fingerprint() == tokenizer.fingerprint()
    tokens = loaded.batch(["the rainy cat"])
    torch.testing.assert_close(tokens["input_ids"], tokenizer.batch(["the rainy cat"])["input_ids"])
    with torch.no_grad():
        torch.testing.assert_close(encoder.eval()(tokens), source.eval()(tokens))


def test_missing_model_directory_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not found"):
        load_text_encoder(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_text_encoder(tmp_path)
