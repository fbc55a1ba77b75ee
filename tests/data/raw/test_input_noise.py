"""The raw-input noise protocol: statistics, per-sample reproducibility, clipping, the fixed bugs."""

from __future__ import annotations

import numpy as np
import pytest

from iidfusion.data.raw.input_noise import (
    InputNoise,
    blank_words,
    gaussian_pixels,
    salt_and_pepper_pixels,
    sample_generator,
)

GRAY = np.full((40, 50, 3), 128, dtype=np.uint8)


def test_blank_words_rate_and_extremes() -> None:
    text = " ".join(f"w{i}" for i in range(5000))
    blanked = blank_words(text, 0.3, np.random.default_rng(0)).split(" ")
    assert len(blanked) == 5000
    assert abs(np.mean([w == "_" for w in blanked]) - 0.3) < 0.03
    assert all(w == "_" or w == f"w{i}" for i, w in enumerate(blanked))
    assert blank_words("a b c", 0.0, np.random.default_rng(0)) == "a b c"
    assert blank_words("a b c", 1.0, np.random.default_rng(0)) == "_ _ _"


def test_level_zero_is_identity_and_each_modality_is_selected_half_the_time_independently() -> None:
    clean = InputNoise(0.0)
    assert clean.text("keep me", 3) == "keep me"
    assert clean.pixels(GRAY, 3) is GRAY
    noise = InputNoise(10.0)  # blank probability 1: a selected text is all blanks
    n = 2000
    text_hit = np.array([noise.text("a b", i) == "_ _" for i in range(n)])
    image_hit = np.array([not np.array_equal(noise.pixels(GRAY, i, "image"), GRAY) for i in range(n)])
    assert abs(text_hit.mean() - 0.5) < 0.05 and abs(image_hit.mean() - 0.5) < 0.05
    assert abs((text_hit & image_hit).mean() - 0.25) < 0.04  # the originals draw the two coins separately


def test_gaussian_std_per_family_fresh_field_per_sample_and_reproducible() -> None:
    vl = InputNoise(5.0, probability=1.0)
    out = vl.pixels(GRAY, 0).astype(float) - 128
    assert abs(out.std() - 50.0) < 2.5  # std 10 * eps on the 0-255 scale
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(
        out[..., 0], out[..., 2]
    )  # one field for all channels
    rgbd = InputNoise(5.0, family="rgbd", probability=1.0)
    assert abs((rgbd.pixels(GRAY, 0).astype(float) - 128).std() - 5.0) < 0.3  # std eps for RGB-D
    # Each sample draws its own field (the originals reseeded with 0: one field for every image).
    assert not np.array_equal(vl.pixels(GRAY, 0), vl.pixels(GRAY, 1))
    # Same (seed, index, modality): same corruption, whatever was drawn before.
    assert np.array_equal(vl.pixels(GRAY, 7), InputNoise(5.0, probability=1.0).pixels(GRAY, 7))
    assert not np.array_equal(vl.pixels(GRAY, 7), InputNoise(5.0, probability=1.0, seed=1).pixels(GRAY, 7))
    assert not np.array_equal(vl.pixels(GRAY, 7, "rgb"), vl.pixels(GRAY, 7, "depth"))


def test_gaussian_clips_instead_of_wrapping() -> None:
    black = np.zeros((60, 60, 3), dtype=np.uint8)
    white = np.full((60, 60, 3), 255, dtype=np.uint8)
    rng = np.random.default_rng(0)
    dark = gaussian_pixels(black, 50.0, rng)
    # Negative noise clips to 0; wrapping in uint8 would make about half the pixels brighter than 100.
    assert (dark == 0).mean() > 0.45
    assert (dark > 200).mean() < 0.001
    assert abs(dark.astype(float).mean() - 50.0 / np.sqrt(2 * np.pi)) < 2.0  # mean of a clipped N(0, 50^2)
    bright = gaussian_pixels(white, 50.0, rng)
    assert (bright == 255).mean() > 0.45 and (bright < 55).mean() < 0.001
    assert black.max() == 0  # never in place


def test_salt_and_pepper_density() -> None:
    image = np.full((200, 200, 3), 128, dtype=np.uint8)
    out = salt_and_pepper_pixels(image, 0.1, np.random.default_rng(0))
    assert abs((out[..., 0] == 0).mean() - 0.05) < 0.01
    assert abs((out[..., 0] == 255).mean() - 0.05) < 0.01
    assert np.array_equal(out[..., 0], out[..., 2])
    assert (image == 128).all()
    noise = InputNoise(5.0, kind="salt-and-pepper", probability=1.0)
    changed = noise.pixels(image, 0)[..., 0] != 128
    assert abs(changed.mean() - 0.1) < 0.015


def test_sample_generator_and_validation() -> None:
    assert sample_generator(1, 2, "text").random() == sample_generator(1, 2, "text").random()
    assert sample_generator(1, 2, "text").random() != sample_generator(1, 2, "image").random()
    with pytest.raises(ValueError, match="level"):
        InputNoise(-1.0)
    with pytest.raises(ValueError, match="pixel noise"):
        InputNoise(1.0, kind="blur")
    with pytest.raises(ValueError, match="family"):
        InputNoise(1.0, family="audio")
    with pytest.raises(ValueError, match="probability"):
        InputNoise(1.0, probability=1.5)
    with pytest.raises(ValueError, match="uint8"):
        InputNoise(1.0, probability=1.0).pixels(GRAY.astype(np.float32), 0)
    assert InputNoise(5.0).describe()["level"] == 5.0


def test_protocol_rates_at_level_5_each_word_blanked_with_probability_one_half_in_selected_texts() -> None:
    """QMF's text noise: a selected sample (probability 0.5) has each word blanked with probability 0.1 x 5."""
    noise = InputNoise(5.0)
    words = " ".join(f"w{i}" for i in range(40))
    blanked = np.array([[w == "_" for w in noise.text(words, i).split(" ")] for i in range(1000)])
    selected = blanked.any(axis=1)  # an unselected text is untouched (P(no blank | selected) = 0.5^40)
    assert abs(selected.mean() - 0.5) < 0.05
    assert abs(blanked[selected].mean() - 0.5) < 0.02 and not blanked[~selected].any()
    image = np.array([not np.array_equal(noise.pixels(GRAY, i), GRAY) for i in range(1000)])
    assert abs(image.mean() - 0.5) < 0.05 and abs((image & selected).mean() - 0.25) < 0.04
