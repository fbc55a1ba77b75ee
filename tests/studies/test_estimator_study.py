import math

import pytest
import torch

from iidfusion_studies.estimator_study import (
    Measurement,
    StudyConfig,
    build_estimators,
    cloud_radius,
    gaussian_mixture_pairs,
    render_markdown,
    run_study,
    spearman,
    summarize,
    view_pairs,
    write_study,
)


def _spectral_share(x: torch.Tensor, top: int) -> float:
    """Share of the (centred) FFT energy held by the ``top`` strongest frequencies."""
    power = torch.fft.rfft(x - x.mean(0), dim=1).abs().square().mean(0)
    return float(power.topk(top).values.sum() / power.sum())


def test_mixture_pairs_are_translated_copies_with_the_asked_spectrum():
    flat = gaussian_mixture_pairs("flat", 128, 200, shifts=(0.0, 2.0), seed=1)
    concentrated = gaussian_mixture_pairs("concentrated", 128, 200, shifts=(0.0, 2.0), seed=1)
    assert [p.label for p in flat] == ["shift=0 draw=0", "shift=2 draw=0"]
    assert flat[0].x.shape == (200, 128) and flat[0].x.dtype == torch.float32
    # y - x differs in mean by shift * (a unit-RMS direction): norm 2 * sqrt(128) up to sampling noise
    gap = [float((p.y.mean(0) - p.x.mean(0)).norm()) for p in flat]
    assert gap[1] == pytest.approx(2.0 * math.sqrt(128), rel=0.25)
    assert gap[0] < 0.5 * gap[1]
    # 4 Fourier frequencies hold nearly all the energy of the concentrated spectrum, little of the flat one
    assert _spectral_share(concentrated[1].x, 4) > 0.9
    assert _spectral_share(flat[1].x, 4) < 0.2
    again = gaussian_mixture_pairs("flat", 128, 200, shifts=(0.0, 2.0), seed=1)
    assert torch.equal(again[1].y, flat[1].y)


def test_view_pairs_pad_handwritten_views_and_vary_synthetic_shift():
    pairs = view_pairs("handwritten", 20)
    assert len(pairs) == 15  # 6 views
    assert {p.x.shape for p in pairs} == {(20, 240)}
    mor = next(p for p in pairs if p.label.endswith("-mor"))
    assert torch.all(mor.y[:, 6:] == 0)  # the 6-feature view, zero-padded
    synthetic = view_pairs("synthetic", 30, shifts=(0.0, 3.0))
    assert [p.label for p in synthetic] == ["shift=0", "shift=3"]
    with pytest.raises(ValueError, match="unknown real data"):
        view_pairs("mnist", 10)


def test_cloud_radius_is_rms_distance_to_mean():
    x = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    pair = gaussian_mixture_pairs("flat", 4, 3, shifts=(0.0,))[0]
    assert cloud_radius([type(pair)(pair.setting, "t", x, 3 * x)]) == pytest.approx(2.0)


def _record(estimate: float, truth: float, estimator: str = "e") -> Measurement:
    return Measurement("s", "flat", 4, 8, f"p{truth}", estimator, "rip", truth, estimate, 0.002)


def test_summary_statistics():
    rows = [_record(0.5 * t, t) for t in (1.0, 2.0, 4.0)]
    (summary,) = summarize(rows)
    assert summary.relative_error == pytest.approx(0.5)
    assert summary.bias == pytest.approx(-0.5)
    assert summary.calibrated_error == pytest.approx(0.0)
    assert summary.spearman == pytest.approx(1.0)
    assert summary.median_ms == pytest.approx(2.0)
    reversed_rows = [_record(5 - t, t) for t in (1.0, 2.0, 4.0)]
    assert summarize(reversed_rows)[0].spearman == pytest.approx(-1.0)
    assert math.isnan(spearman([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="spectrum"):
        StudyConfig(spectra=("pink",))
    with pytest.raises(ValueError, match="draws >= 1"):
        StudyConfig(draws=0)


TINY = StudyConfig(
    dims=(16,),
    sizes=(12,),
    spectra=("flat",),
    shifts=(0.0, 1.0, 3.0),
    real=(),
    sampled_k=(6, 64),
    sliced_projections=(8,),
    max_sliced_projections=8,
    rip=((4, 8), (32, 64)),
    rip_variants_at=(4, 8),
)


def test_tiny_study_measures_every_applicable_estimator(tmp_path):
    records = run_study(TINY)
    names = {r.estimator for r in records}
    assert "rip d1=32 d2=64" not in names and "sampled k=64" not in names  # do not fit d=16, n=12
    expected = {s.name for s in build_estimators(TINY)} - {"rip d1=32 d2=64", "sampled k=64"} | {"exact (truth)"}
    assert names == expected
    assert len(records) == 3 * len(expected)
    summaries = {s.estimator: s for s in summarize(records)}
    assert summaries["exact (truth)"].relative_error == 0
    # full entropic OT ranks pairs whose distance grows with the shift like the truth
    assert summaries["entropic"].spearman == pytest.approx(1.0)
    assert all(math.isfinite(r.estimate) and r.seconds > 0 for r in records)

    files = write_study(records, TINY, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wasserstein.csv", "wasserstein.md", "wasserstein.png"]
    assert {p.name for p in files} == {"wasserstein.csv", "wasserstein.md", "wasserstein.png"}
    assert (tmp_path / "wasserstein.md").read_text() == render_markdown(records, TINY)
    assert len((tmp_path / "wasserstein.csv").read_text().splitlines()) == len(records) + 1
    assert (tmp_path / "wasserstein.png").read_bytes()[:4] == b"\x89PNG"
