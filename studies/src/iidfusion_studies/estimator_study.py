"""How well cheap Wasserstein estimators track exact EMD: the paper's Figure 2 (docs/evidence.md, section 1).

For each *setting* (a data kind, a width d and a cloud size n) we draw several pairs of point
clouds whose distance ranges from none to large, compute the ground truth, exact W1 with the
Euclidean cost in the original space (:func:`iidfusion.ot.wasserstein_exact`, float64), and
every estimator of :mod:`iidfusion.ot` on the same pair (float32, as in training). Per
estimator and setting we report the median relative error |est - W1| / W1, the median signed
bias, the error left after the best constant rescaling (does the estimator track W1 up to a
unit?), the Spearman correlation with W1 across the setting's pairs (does it rank pairs
right, which is what a loss needs?), and the median CPU time of one estimate (process time,
which other jobs on a shared machine do not inflate), all in the same run.

Data (:func:`gaussian_mixture_pairs`, :func:`view_pairs`):

* Gaussian mixtures (4 components, per-coordinate variance about 2). ``flat`` spectrum: white
  features; ``concentrated``: features in the span of 4 Fourier frequencies (8 real modes) plus
  white noise of std 0.1, the case the FFT top-d1 step of the RIP estimator is built for. The
  second cloud is an independent sample of the same mixture translated by ``shift`` per
  coordinate along a direction of the same spectrum (population W1 = shift * sqrt(d)).
* Real pairs: every pair of views of the bundled Handwritten set (the same ``n`` training
  samples; views zero-padded to the widest view, 240, an isometric embedding, so each view's
  geometry is unchanged and the truth is the EMD of the padded clouds); and the two views of the
  synthetic benchmark (width 32) at several modality shifts.

Units. The entropic and relaxed estimators need eps and rho in units of the cost. As in L_dc
(:mod:`iidfusion.losses.coherence`, cost divided by sqrt(d), eps = 0.1, rho = 10 for unit-variance
features), we take them relative to the setting's *cloud radius* u (the root mean squared
distance of a point to its cloud's mean, averaged over the setting's clouds): eps = eps_rel * u,
rho = rho_rel * u. The estimators of :mod:`iidfusion.ot` return a transport cost in the unit of
W1 (entropic, sampled and RIP: <T, C> of their entropic plan; sliced: rescaled to be exact for
translations). The study adds, at one (d1, d2): L_dc's own quantity, the optimal VALUE of the
relaxed objective (``rip-value (L_dc)``: entropic and mass-relaxation terms included), its
debiased form (the Sinkhorn divergence of ``debias=True``), the balanced transport cost
(rho = inf), and exact EMD between the reduced clouds (``rip-exact``: the error of the
reduction alone, without any entropic or relaxation bias).
"""

from __future__ import annotations

import functools
import itertools
import math
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from matplotlib.lines import Line2D
from scipy.stats import spearmanr
from torch import Tensor

from iidfusion import ot
from iidfusion.data.features.registry import load_dataset
from iidfusion.data.features.synthetic import SyntheticConfig, generate_synthetic
from iidfusion.engine.results import csv_text, fmt_number, markdown_table
from iidfusion.ot import FourierRIPReducer, pairwise_cost, sinkhorn_unbalanced, wasserstein_exact
from iidfusion_studies._report import new_figure, write_outputs

if TYPE_CHECKING:
    from iidfusion.ot import FourierRIPReducer

RESULT_STEM = "wasserstein"
TRUTH = "exact (truth)"
MIXTURE_COMPONENTS = 4
CONCENTRATED_FREQUENCIES = 4
CONCENTRATED_NOISE = 0.1


@dataclass(frozen=True)
class StudyConfig:
    """What the study measures; the defaults take a few minutes on one CPU thread."""

    dims: tuple[int, ...] = (64, 256, 1024, 4096)
    sizes: tuple[int, ...] = (64, 256)
    spectra: tuple[str, ...] = ("flat", "concentrated")
    shifts: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)
    """translations per coordinate, from none to about three cloud standard deviations."""
    draws: int = 1
    """independent pairs per (setting, shift)."""
    real: tuple[str, ...] = ("handwritten", "synthetic")
    eps_rel: float = 0.1
    rho_rel: float = 10.0
    sampled_k: tuple[int, ...] = (16, 32)
    sliced_projections: tuple[int, ...] = (16, 256)
    max_sliced_projections: int = 256
    max_sliced_ascent_steps: int = 20
    """steps of the ascent on the sphere of the second max-sliced row (the first: random directions only)."""
    rip: tuple[tuple[int, int], ...] = ((8, 32), (16, 32), (16, 64), (32, 128), (16, 0))
    """(d1, d2) of the RIP estimator; d2 = 0 is L_dc's default (``FourierRIPReducer(d, d1)``:
    rip_dimension(d, d1), or no projection where that is not below d)."""
    rip_variants_at: tuple[int, int] = (16, 64)
    """(d1, d2) at which the debiased, balanced and exact-in-reduced-space variants run."""
    seed: int = 0
    threads: int = 1

    def __post_init__(self) -> None:
        unknown = [s for s in self.spectra if s not in SPECTRA]
        if unknown:
            raise ValueError(f"unknown spectrum {unknown[0]!r}; expected some of {list(SPECTRA)}")
        unknown = [r for r in self.real if r not in REAL_DATA]
        if unknown:
            raise ValueError(f"unknown real data {unknown[0]!r}; expected some of {list(REAL_DATA)}")
        checks = {
            "dims >= 2": all(d >= 2 for d in self.dims),
            "sizes >= 2": all(n >= 2 for n in self.sizes),
            "shifts >= 0": all(s >= 0 for s in self.shifts),
            "draws >= 1": self.draws >= 1,
            "eps_rel > 0": self.eps_rel > 0,
            "rho_rel > 0": self.rho_rel > 0,
            "threads >= 1": self.threads >= 1,
            "max_sliced_ascent_steps >= 0": self.max_sliced_ascent_steps >= 0,
            "at least one setting": bool((self.dims and self.spectra and self.shifts) or self.real)
            and bool(self.sizes),
        }
        failed = [rule for rule, ok in checks.items() if not ok]
        if failed:
            raise ValueError(f"invalid study configuration: need {'; '.join(failed)}")


@dataclass(frozen=True)
class Setting:
    """A family of pairs: ``kind`` (spectrum or real data name), width ``dim``, cloud size ``size``."""

    kind: str
    dim: int
    size: int

    @property
    def name(self) -> str:
        return f"{self.kind} d={self.dim} n={self.size}"


@dataclass(frozen=True)
class CloudPair:
    """Two point clouds ``x`` (n, d) and ``y`` (n, d) of one setting; ``label`` says how they differ."""

    setting: Setting
    label: str
    x: Tensor
    y: Tensor


@dataclass(frozen=True)
class OTUnits:
    """eps and rho of the entropic / relaxed estimators, in the unit of the cost."""

    eps: float
    rho: float


Estimate = Callable[[Tensor, Tensor, OTUnits, torch.Generator], Tensor]


@dataclass(frozen=True)
class EstimatorSpec:
    """One estimator configuration: its table ``name``, ``family`` (plot colour) and function."""

    name: str
    family: str
    estimate: Estimate
    applies: Callable[[Setting], bool] = field(default=lambda setting: True)


@dataclass(frozen=True)
class Measurement:
    """One estimator on one pair: the truth, the estimate and the CPU time of the estimate."""

    setting: str
    kind: str
    dim: int
    size: int
    pair: str
    estimator: str
    family: str
    truth: float
    estimate: float
    seconds: float


@dataclass(frozen=True)
class Summary:
    """One estimator on one setting (medians over the setting's pairs)."""

    setting: str
    kind: str
    estimator: str
    family: str
    pairs: int
    relative_error: float
    bias: float
    calibrated_error: float
    spearman: float
    median_ms: float


# --- data -------------------------------------------------------------------------------


def _unit_rms(v: Tensor) -> Tensor:
    """``v`` rescaled to root-mean-square 1 per coordinate (Euclidean norm sqrt(d))."""
    return v * (math.sqrt(v.shape[-1]) / v.norm(dim=-1, keepdim=True))


def fourier_modes(dim: int, count: int, generator: torch.Generator) -> Tensor:
    """(2 * count, d) real Fourier modes (cos, sin) at ``count`` random distinct frequencies, unit RMS."""
    available = max(dim // 2 - 1, 1)
    frequencies = torch.randperm(available, generator=generator)[: min(count, available)] + 1
    t = torch.arange(dim, dtype=torch.float64)
    angles = 2 * math.pi * frequencies[:, None].double() * t[None] / dim
    return _unit_rms(torch.cat([angles.cos(), angles.sin()]))


def _flat_sampler(dim: int, generator: torch.Generator) -> tuple[Callable[[int], Tensor], Tensor]:
    means = torch.randn(MIXTURE_COMPONENTS, dim, generator=generator, dtype=torch.float64)

    def sample(n: int) -> Tensor:
        labels = torch.randint(MIXTURE_COMPONENTS, (n,), generator=generator)
        return means[labels] + torch.randn(n, dim, generator=generator, dtype=torch.float64)

    direction = _unit_rms(torch.randn(dim, generator=generator, dtype=torch.float64))
    return sample, direction


def _concentrated_sampler(dim: int, generator: torch.Generator) -> tuple[Callable[[int], Tensor], Tensor]:
    modes = fourier_modes(dim, CONCENTRATED_FREQUENCIES, generator)  # (r, d), unit RMS rows
    r = modes.shape[0]
    means = torch.randn(MIXTURE_COMPONENTS, r, generator=generator, dtype=torch.float64)

    def sample(n: int) -> Tensor:
        labels = torch.randint(MIXTURE_COMPONENTS, (n,), generator=generator)
        coefficients = means[labels] + torch.randn(n, r, generator=generator, dtype=torch.float64)
        noise = CONCENTRATED_NOISE * torch.randn(n, dim, generator=generator, dtype=torch.float64)
        # 1/sqrt(r): the per-coordinate variance is that of one coefficient, as in the flat case.
        return coefficients @ modes / math.sqrt(r) + noise

    direction = _unit_rms(torch.randn(r, generator=generator, dtype=torch.float64) @ modes)
    return sample, direction


SPECTRA: dict[str, Callable[[int, torch.Generator], tuple[Callable[[int], Tensor], Tensor]]] = {
    "flat": _flat_sampler,
    "concentrated": _concentrated_sampler,
}


def gaussian_mixture_pairs(
    spectrum: str, dim: int, size: int, shifts: Sequence[float], draws: int = 1, seed: int = 0
) -> list[CloudPair]:
    """Pairs (x, y): x and y independent n-samples of one mixture, y translated by ``shift`` per coordinate.

    The mixture and the translation direction are drawn once per (spectrum, d, n, seed); see the
    module docstring for the two spectra.
    """
    if spectrum not in SPECTRA:
        raise ValueError(f"unknown spectrum {spectrum!r}; expected one of {list(SPECTRA)}")
    generator = torch.Generator().manual_seed(seed * 1_000_003 + dim * 7_919 + size)
    sample, direction = SPECTRA[spectrum](dim, generator)
    setting = Setting(spectrum, dim, size)
    pairs = []
    for draw in range(draws):
        for shift in shifts:
            x, y = sample(size), sample(size) + shift * direction
            pairs.append(CloudPair(setting, f"shift={shift:g} draw={draw}", x.float(), y.float()))
    return pairs


def _handwritten_pairs(size: int, shifts: Sequence[float], seed: int) -> list[CloudPair]:

    train = load_dataset("handwritten", seed=seed).train
    if size > len(train):
        raise ValueError(f"cloud size {size} exceeds the {len(train)} Handwritten training samples")
    index = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:size]
    width = max(int(v.shape[1]) for v in train.views.values())
    padded = {
        name: torch.nn.functional.pad(view[index], (0, width - view.shape[1])) for name, view in train.views.items()
    }
    setting = Setting("handwritten", width, size)
    return [CloudPair(setting, f"{a}-{b}", padded[a], padded[b]) for a, b in itertools.combinations(padded, 2)]


def _synthetic_pairs(size: int, shifts: Sequence[float], seed: int) -> list[CloudPair]:
    pairs = []
    for shift in shifts:
        config = SyntheticConfig(shift=shift)
        data = generate_synthetic(config, num_samples=size, seed=seed)
        pairs.append(
            CloudPair(Setting("synthetic", config.dim, size), f"shift={shift:g}", data.views["m0"], data.views["m1"])
        )
    return pairs


REAL_DATA: dict[str, Callable[[int, Sequence[float], int], list[CloudPair]]] = {
    "handwritten": _handwritten_pairs,
    "synthetic": _synthetic_pairs,
}


QUICK = StudyConfig(
    dims=(64, 1024),
    sizes=(64,),
    shifts=(0.0, 0.5, 2.0),
    real=("handwritten",),
    sampled_k=(16,),
    sliced_projections=(64,),
    rip=((16, 32),),
)
"""A smoke-test size of the study (seconds)."""


def view_pairs(name: str, size: int, shifts: Sequence[float] = (), seed: int = 0) -> list[CloudPair]:
    """Pairs of views of a bundled data set (module docstring); ``shifts`` only for ``synthetic``."""
    if name not in REAL_DATA:
        raise ValueError(f"unknown real data {name!r}; expected one of {list(REAL_DATA)}")
    return REAL_DATA[name](size, shifts, seed)


def iter_settings(config: StudyConfig) -> Iterator[list[CloudPair]]:
    """The pairs of each setting of ``config``, one setting at a time (data made lazily)."""
    for spectrum in config.spectra:
        for dim in config.dims:
            for size in config.sizes:
                yield gaussian_mixture_pairs(spectrum, dim, size, config.shifts, config.draws, config.seed)
    for name in config.real:
        for size in config.sizes:
            yield view_pairs(name, size, config.shifts, config.seed)


def cloud_radius(pairs: Sequence[CloudPair]) -> float:
    """Root mean squared distance of a point to its cloud's mean, averaged over the clouds."""
    radii = [
        float((cloud - cloud.mean(dim=0)).square().sum(dim=1).mean().sqrt())
        for pair in pairs
        for cloud in (pair.x, pair.y)
    ]
    return statistics.fmean(radii)


# --- estimators ---------------------------------------------------------------------------


def _rip_fits(d1: int, d2: int) -> Callable[[Setting], bool]:
    """The RIP reduction is meaningful when d1 frequencies exist and a fixed d2 does not exceed d."""
    return lambda setting: d1 <= setting.dim // 2 + 1 and d2 <= setting.dim


def _fits_size(k: int) -> Callable[[Setting], bool]:
    return lambda setting: k < setting.size


@functools.lru_cache(maxsize=16)
def _reducer(dim: int, d1: int, d2: int | None, seed: int) -> FourierRIPReducer:
    """One reducer per shape, as ``wasserstein_rip`` caches its own: composing Psi is not part of an estimate."""
    return FourierRIPReducer(dim, d1, d2 or None, seed=seed)


def _reduced_cost(x: Tensor, y: Tensor, d1: int, d2: int, seed: int) -> Tensor:
    """Euclidean cost between the reduced clouds (each cloud keeps its own d1 bins, as in L_dc)."""
    reducer = _reducer(x.shape[1], d1, d2, seed)
    return pairwise_cost(reducer(x), reducer(y), p=1)


def _relaxed_value(cost: Tensor, eps: float, rho: float) -> Tensor:
    """The optimal value of the relaxed objective, what L_dc sums (entropic and mass terms included)."""
    return sinkhorn_unbalanced(cost, eps=eps, rho=rho).value


def build_estimators(config: StudyConfig) -> list[EstimatorSpec]:
    """The estimator configurations of the study: iidfusion.ot's, plus L_dc's own value and its variants."""
    seed = config.seed
    specs = [
        EstimatorSpec("entropic", "entropic", lambda x, y, u, g: ot.wasserstein_entropic(x, y, eps=u.eps)),
    ]
    for k in config.sampled_k:
        specs.append(
            EstimatorSpec(
                f"sampled k={k}",
                "sampled",
                lambda x, y, u, g, k=k: ot.wasserstein_sampled(x, y, k=k, eps=u.eps, generator=g),
                _fits_size(k),
            )
        )
    for count in config.sliced_projections:
        specs.append(
            EstimatorSpec(
                f"sliced L={count}",
                "sliced",
                lambda x, y, u, g, c=count: ot.wasserstein_sliced(x, y, n_projections=c, generator=g),
            )
        )
    for steps in sorted({0, config.max_sliced_ascent_steps}):
        specs.append(
            EstimatorSpec(
                f"max-sliced L={config.max_sliced_projections}" + (f" ascent={steps}" if steps else ""),
                "max-sliced",
                lambda x, y, u, g, steps=steps: ot.wasserstein_max_sliced(
                    x, y, n_projections=config.max_sliced_projections, generator=g, ascent_steps=steps
                ),
            )
        )
    for d1, d2 in config.rip:
        specs.append(
            EstimatorSpec(
                f"rip d1={d1} d2={d2 or 'auto'}",
                "rip",
                lambda x, y, u, g, d1=d1, d2=d2: ot.wasserstein_rip(
                    x, y, d1=d1, d2=d2 or None, eps=u.eps, rho=u.rho, seed=seed
                ),
                _rip_fits(d1, d2),
            )
        )
    d1, d2 = config.rip_variants_at
    fits = _rip_fits(d1, d2)

    def debiased(x: Tensor, y: Tensor, u: OTUnits, g: torch.Generator) -> Tensor:
        cross = _relaxed_value(_reduced_cost(x, y, d1, d2, seed), u.eps, u.rho)
        self_x = _relaxed_value(_reduced_cost(x, x, d1, d2, seed), u.eps, u.rho)
        self_y = _relaxed_value(_reduced_cost(y, y, d1, d2, seed), u.eps, u.rho)
        return cross - 0.5 * (self_x + self_y)

    suffix = f"d1={d1} d2={d2}"
    specs += [
        EstimatorSpec(
            f"rip-balanced {suffix}",
            "rip-variant",
            lambda x, y, u, g: ot.wasserstein_rip(x, y, d1=d1, d2=d2, eps=u.eps, rho=math.inf, seed=seed),
            fits,
        ),
        EstimatorSpec(
            f"rip-value (L_dc) {suffix}",
            "rip-variant",
            lambda x, y, u, g: _relaxed_value(_reduced_cost(x, y, d1, d2, seed), u.eps, u.rho),
            fits,
        ),
        EstimatorSpec(f"rip-debiased value {suffix}", "rip-variant", debiased, fits),
        EstimatorSpec(
            f"rip-exact {suffix}",
            "rip-variant",
            lambda x, y, u, g: ot.wasserstein_exact(
                *_reducer(x.shape[1], d1, d2, seed)(torch.stack([x, y])).unbind(0), p=1
            ),
            fits,
        ),
    ]
    return specs


# --- measurement ------------------------------------------------------------------------------


def _timed(fn: Callable[[], Tensor]) -> tuple[float, float]:
    """(value, CPU seconds of this process): unlike wall time, not inflated by other jobs on a shared machine."""
    start = time.process_time()
    value = float(fn())
    return value, time.process_time() - start


def measure_setting(
    pairs: Sequence[CloudPair], estimators: Sequence[EstimatorSpec], config: StudyConfig
) -> list[Measurement]:
    """Truth (exact EMD, float64) and every applicable estimator on each pair of one setting."""
    if not pairs:
        raise ValueError("a setting needs at least one pair")
    setting = pairs[0].setting
    radius = cloud_radius(pairs)
    units = OTUnits(eps=config.eps_rel * radius, rho=config.rho_rel * radius)
    applicable = [spec for spec in estimators if spec.applies(setting)]
    records = []
    with torch.no_grad():
        for spec in applicable:  # warm-up, untimed: caches (e.g. the reducer's Psi) and allocator
            spec.estimate(pairs[0].x, pairs[0].y, units, torch.Generator().manual_seed(0))
        for index, pair in enumerate(pairs):
            truth, seconds = _timed(lambda pair=pair: wasserstein_exact(pair.x.double(), pair.y.double(), p=1))
            rows = [(TRUTH, "exact", truth, seconds)]
            for spec in applicable:
                generator = torch.Generator().manual_seed(config.seed * 7_919 + index)
                value, seconds = _timed(functools.partial(spec.estimate, pair.x, pair.y, units, generator))
                if not math.isfinite(value):
                    raise FloatingPointError(f"{spec.name} gave {value} on {setting.name} pair {pair.label}")
                rows.append((spec.name, spec.family, value, seconds))
            records.extend(
                Measurement(
                    setting.name,
                    setting.kind,
                    setting.dim,
                    setting.size,
                    pair.label,
                    name,
                    family,
                    truth,
                    value,
                    seconds,
                )
                for name, family, value, seconds in rows
            )
    return records


def run_study(config: StudyConfig, log: Callable[[str], None] = lambda message: None) -> list[Measurement]:
    """Every setting of ``config``: a list of :class:`Measurement` (truth rows included)."""
    estimators = build_estimators(config)
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        records: list[Measurement] = []
        for pairs in iter_settings(config):
            start = time.perf_counter()
            records.extend(measure_setting(pairs, estimators, config))
            log(f"{pairs[0].setting.name}: {len(pairs)} pairs in {time.perf_counter() - start:.1f} s")
        return records
    finally:
        torch.set_num_threads(threads)


# --- summary ------------------------------------------------------------------------------------


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman rank correlation; NaN when either side is constant or has fewer than 3 values."""
    if len(a) < 3 or len(set(a)) < 2 or len(set(b)) < 2:
        return math.nan
    return float(spearmanr(a, b).statistic)


def summarize(records: Sequence[Measurement]) -> list[Summary]:
    """Per (setting, estimator): median relative error, bias, calibrated error, Spearman, time."""
    groups: dict[tuple[str, str], list[Measurement]] = {}
    for record in records:
        groups.setdefault((record.setting, record.estimator), []).append(record)
    summaries = []
    for (setting, estimator), rows in groups.items():
        truth = [r.truth for r in rows]
        estimate = [r.estimate for r in rows]
        ratios = [e / t for e, t in zip(estimate, truth, strict=True)]
        positive = [t / e for e, t in zip(estimate, truth, strict=True) if e > 0]
        scale = statistics.median(positive) if positive else math.nan
        summaries.append(
            Summary(
                setting=setting,
                kind=rows[0].kind,
                estimator=estimator,
                family=rows[0].family,
                pairs=len(rows),
                relative_error=statistics.median(abs(q - 1) for q in ratios),
                bias=statistics.median(q - 1 for q in ratios),
                calibrated_error=statistics.median(abs(scale * q - 1) for q in ratios),
                spearman=spearman(estimate, truth),
                median_ms=1e3 * statistics.median(r.seconds for r in rows),
            )
        )
    return summaries


def overall(summaries: Sequence[Summary], order: Sequence[str] = ()) -> list[dict[str, float | str | int]]:
    """Per estimator, the medians over settings of the per-setting summaries; estimators in ``order`` first."""
    by_estimator: dict[str, list[Summary]] = {name: [] for name in order}
    for s in summaries:
        by_estimator.setdefault(s.estimator, []).append(s)

    def median(values: list[float]) -> float:
        finite = [v for v in values if math.isfinite(v)]
        return statistics.median(finite) if finite else math.nan

    return [
        {
            "estimator": name,
            "settings": len(rows),
            "relative_error": median([r.relative_error for r in rows]),
            "bias": median([r.bias for r in rows]),
            "calibrated_error": median([r.calibrated_error for r in rows]),
            "spearman": median([r.spearman for r in rows]),
            "worst_spearman": min((r.spearman for r in rows if math.isfinite(r.spearman)), default=math.nan),
            "median_ms": median([r.median_ms for r in rows]),
        }
        for name, rows in by_estimator.items()
        if rows
    ]


def kind_table(summaries: Sequence[Summary], config: StudyConfig) -> str:
    """Median relative error per estimator (rows) and kind of data (columns)."""
    kinds = list(dict.fromkeys(s.kind for s in summaries))
    cells: dict[tuple[str, str], list[float]] = {}
    for s in summaries:
        cells.setdefault((s.estimator, s.kind), []).append(s.relative_error)
    names = [n for n in [TRUTH] + [e.name for e in build_estimators(config)] if any((n, k) in cells for k in kinds)]
    rows = [
        [n] + [fmt_number(statistics.median(cells[(n, k)])) if (n, k) in cells else "n/a" for k in kinds] for n in names
    ]
    return markdown_table(["estimator", *kinds], rows)


def render_markdown(records: Sequence[Measurement], config: StudyConfig) -> str:
    """The report: an overall table per estimator, then one table per setting."""
    summaries = summarize(records)
    headers = ["estimator", "rel. error", "bias", "calibrated error", "Spearman", "time (ms)"]
    lines = [
        "# Wasserstein estimators against exact EMD",
        "",
        f"W1 (Euclidean cost); truth = exact EMD in the original space. eps = {config.eps_rel:g} x, "
        f"rho = {config.rho_rel:g} x the setting's cloud radius; seed {config.seed}; "
        f"{config.threads} torch thread(s). Medians over each setting's pairs; "
        "'calibrated error' is the relative error left after the best constant rescaling of the "
        "estimator; time is the median CPU time of one estimate (process time, same run).",
        "",
        "## All settings (median over settings; worst Spearman = lowest over settings)",
        "",
        markdown_table(
            [
                "estimator",
                "settings",
                "rel. error",
                "bias",
                "calibrated error",
                "Spearman",
                "worst Spearman",
                "time (ms)",
            ],
            [
                [
                    str(row["estimator"]),
                    str(row["settings"]),
                    fmt_number(row["relative_error"]),  # type: ignore[arg-type]
                    fmt_number(row["bias"], "+.3g"),  # type: ignore[arg-type]
                    fmt_number(row["calibrated_error"]),  # type: ignore[arg-type]
                    fmt_number(row["spearman"], ".3f"),  # type: ignore[arg-type]
                    fmt_number(row["worst_spearman"], ".3f"),  # type: ignore[arg-type]
                    fmt_number(row["median_ms"], ".3g"),  # type: ignore[arg-type]
                ]
                for row in overall(summaries, [TRUTH] + [e.name for e in build_estimators(config)])
            ],
        ),
    ]
    lines += [
        "",
        "## Relative error by kind of data (median over the kind's settings)",
        "",
        kind_table(summaries, config),
    ]
    settings = list(dict.fromkeys(s.setting for s in summaries))
    for setting in settings:
        rows = [s for s in summaries if s.setting == setting]
        lines += [
            "",
            f"## {setting} ({rows[0].pairs} pairs)",
            "",
            markdown_table(
                headers,
                [
                    [
                        s.estimator,
                        fmt_number(s.relative_error),
                        fmt_number(s.bias, "+.3g"),
                        fmt_number(s.calibrated_error),
                        fmt_number(s.spearman, ".3f"),
                        fmt_number(s.median_ms, ".3g"),
                    ]
                    for s in rows
                ],
            ),
        ]
    return "\n".join(lines) + "\n"


FAMILY_COLOURS = {
    "exact": "black",  # the truth itself: its time, at the error floor
    "entropic": "tab:blue",
    "sampled": "tab:orange",
    "sliced": "tab:green",
    "max-sliced": "tab:olive",
    "rip": "tab:red",
    "rip-variant": "tab:purple",
}
LEGEND = {"exact": "exact EMD (error 0, on the floor)"}
ERROR_FLOOR = 1e-3
"""where an error below it (exact EMD: 0) is drawn on the log axis."""
KIND_MARKERS = {"flat": "o", "concentrated": "s", "handwritten": "^", "synthetic": "D"}


def plot_error_vs_time(records: Sequence[Measurement]):  # -> matplotlib Figure
    """Two panels, one point per estimator and setting: relative error (raw, calibrated) vs time."""
    summaries = summarize(records)
    figure, axes = new_figure(2, width=6.4, height=4.8)
    for axis, attribute, title in zip(
        axes,
        ("relative_error", "calibrated_error"),
        ("relative error |est - W1| / W1", "after the best constant rescaling"),
        strict=True,
    ):
        for s in summaries:
            value = max(getattr(s, attribute), ERROR_FLOOR)  # exact EMD (error 0) sits on the floor
            axis.scatter(
                s.median_ms,
                value,
                color=FAMILY_COLOURS.get(s.family, "grey"),
                marker=KIND_MARKERS.get(s.kind, "x"),
                s=22,
                alpha=0.75,
            )
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("median CPU time per estimate (ms)")
        axis.set_ylabel("median relative error")
        axis.set_title(title)
        axis.grid(True, which="both", alpha=0.3)
    handles = [
        Line2D([], [], color=c, marker="o", linestyle="", label=LEGEND.get(f, f)) for f, c in FAMILY_COLOURS.items()
    ]
    handles += [Line2D([], [], color="grey", marker=m, linestyle="", label=k) for k, m in KIND_MARKERS.items()]
    axes[1].legend(handles=handles, fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    figure.suptitle("Wasserstein estimators vs exact EMD: one point per estimator and setting")
    return figure


def write_study(records: Sequence[Measurement], config: StudyConfig, out: str | Path) -> list[Path]:
    """``wasserstein.md`` (the report), ``wasserstein.csv`` (every measurement), ``wasserstein.png``."""
    return write_outputs(
        out,
        {
            f"{RESULT_STEM}.md": render_markdown(records, config),
            f"{RESULT_STEM}.csv": csv_text([asdict(r) for r in records]),
        },
        {f"{RESULT_STEM}.png": plot_error_vs_time(records)},
    )
