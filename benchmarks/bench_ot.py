"""Forward + backward of the L_dc transport problem: ours against POT, GeomLoss and OTT-JAX.

``python benchmarks/bench_ot.py [--quick]`` (``make bench``). For M modalities the L_dc of
L_dc (docs/method.md, "Distribution coherence") solves P = M(M-1)/2 unbalanced entropic OT problems between clouds of n
points already reduced to d2 dimensions, then backpropagates their values to the points.
Each method is run to the same accuracy: for every method and problem size, the cheapest
of its settings (tolerance, iterations, annealing) whose value is within ``--target``
relative error of the converged value (ours in float64, tolerance 1e-12) on every pair.
The timed runs are float32, medians of repeats interleaved across methods so that all
see the same machine load. Writes benchmarks/results/ot.md (``--quick``: prints only,
unless ``--output`` is given). OTT-JAX runs in a process of its own under ``--ott-python``
(benchmarks/ott_worker.py), in the same rounds; without it, its columns read n/a.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from geomloss import SamplesLoss

import ot
from iidfusion.ot import pairwise_cost, sinkhorn_unbalanced

Solver = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (P,n,d), (P,m,d) -> (P,) values
RESULTS = Path(__file__).resolve().parent / "results" / "ot.md"
POT_MAX_ITER = 2000


@dataclass(frozen=True)
class Problem:
    """The stacked clouds of all modality pairs, and the converged values and gradients."""

    modalities: int
    n: int
    x: torch.Tensor  # (P, n, d2) float32, first modality of each pair
    y: torch.Tensor  # (P, n, d2) float32, second modality
    reference: torch.Tensor  # (P,) converged values, float64
    reference_grad: torch.Tensor  # gradients w.r.t. (x, y), flattened, float64


@dataclass(frozen=True)
class Setting:
    label: str
    family: str  # settings of one family are listed from the cheapest to the dearest
    solve: Solver
    # (CPU, wall) seconds of one forward + backward measured where it runs (another process);
    # None: timed in this process around ``solve``
    timer: Callable[[], tuple[float, float]] | None = None


@dataclass(frozen=True)
class Choice:
    method: str
    setting: Setting | None  # None: no setting reached the target
    value_error: float
    grad_error: float
    median_ms: float = math.nan  # CPU time of this process
    times: tuple[float, ...] = ()  # CPU seconds, one per interleaved round
    wall_times: tuple[float, ...] = ()  # wall-clock seconds, the same runs


def make_problem(modalities: int, n: int, d2: int, eps: float, rho: float, seed: int) -> Problem:
    """Features of M modalities with their own mean and spread, as L_dc sees them."""
    generator = torch.Generator().manual_seed(seed)
    features = [
        torch.randn(n, d2, generator=generator, dtype=torch.float64) * (1.0 + 0.2 * k) / math.sqrt(d2)
        + 0.4 * torch.randn(d2, generator=generator, dtype=torch.float64) / math.sqrt(d2)
        for k in range(modalities)
    ]
    pairs = list(itertools.combinations(range(modalities), 2))
    x = torch.stack([features[i] for i, _ in pairs])
    y = torch.stack([features[j] for _, j in pairs])
    values, grads = run_once(
        lambda a, b: sinkhorn_unbalanced(pairwise_cost(a, b), eps=eps, rho=rho, tol=1e-12, max_iter=100_000).value,
        x,
        y,
    )
    return Problem(modalities, n, x.float(), y.float(), values, grads)


def run_once(solve: Solver, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Values (P,) and the gradient of their sum w.r.t. both clouds, flattened."""
    x = x.clone().requires_grad_()
    y = y.clone().requires_grad_()
    values = solve(x, y)
    values.sum().backward()
    assert x.grad is not None and y.grad is not None
    return values.detach(), torch.cat([x.grad.flatten(), y.grad.flatten()])


def errors(problem: Problem, solve: Solver) -> tuple[float, float]:
    values, grads = run_once(solve, problem.x, problem.y)
    value_error = ((values.double() - problem.reference) / problem.reference).abs().max().item()
    grad_error = ((grads.double() - problem.reference_grad).norm() / problem.reference_grad.norm()).item()
    return value_error, grad_error


# ----------------------------------------------------------------------------- the methods


def ours_settings(eps: float, rho: float) -> list[Setting]:
    """Tolerance on the marginal residual, checked every 1, 2, 4 or 10 (the default) iterations."""

    def solver(tol: float, check_every: int) -> Solver:
        return lambda x, y: (
            sinkhorn_unbalanced(pairwise_cost(x, y), eps=eps, rho=rho, tol=tol, check_every=check_every).value
        )

    return [
        Setting(f"tol={tol:g} check_every={check_every}", f"ours-{check_every}", solver(tol, check_every))
        for check_every in (1, 2, 4, 10)
        for tol in (1.0, 3e-1, 1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 1e-4, 1e-5)
    ]


def pot_settings(eps: float, rho: float) -> list[Setting]:
    """POT 0.9.7, torch backend, one call per pair, autograd through its iterations.

    POT's ``returnCost="total"`` drops the mass terms of the generalised KL (it is 0 at the
    optimum), so the objective of docs/method.md ("Distribution coherence") is evaluated on POT's plan. Autograd keeps
    every iteration (POT's stabilised method stores a full matrix per absorption), so the
    iterations are capped at ``POT_MAX_ITER``: a setting that needs more fails the target.
    """

    def solver(method: str, threshold: float) -> Solver:
        def solve(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            a = torch.full((x.shape[1],), 1.0 / x.shape[1], dtype=x.dtype)
            b = torch.full((y.shape[1],), 1.0 / y.shape[1], dtype=y.dtype)
            values = []
            for x_p, y_p in zip(x, y, strict=True):
                cost = pairwise_cost(x_p, y_p)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # "did not converge" at loose thresholds
                    plan = ot.unbalanced.sinkhorn_unbalanced(
                        a,
                        b,
                        cost,
                        eps,
                        rho,
                        method=method,
                        reg_type="kl",
                        numItermax=POT_MAX_ITER,
                        stopThr=threshold,
                    )
                values.append(_relaxed_objective(plan, cost, a, b, eps, rho))
            return torch.stack(values)

        return solve

    methods = ("sinkhorn", "sinkhorn_stabilized", "sinkhorn_translation_invariant")
    thresholds = (3e-1, 1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 1e-5, 1e-6)
    return [
        Setting(f"{method} stopThr={threshold:g}", method, solver(method, threshold))
        for method in methods
        for threshold in thresholds
    ]


def _relaxed_objective(
    plan: torch.Tensor, cost: torch.Tensor, a: torch.Tensor, b: torch.Tensor, eps: float, rho: float
) -> torch.Tensor:
    def kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        # Entries that underflow to 0 in float32 would give log(0) in the gradient.
        safe = p.clamp_min(torch.finfo(p.dtype).tiny)
        return (p * torch.log(safe / q) - p + q).sum()

    return (
        (plan * cost).sum()
        + eps * kl(plan, a[:, None] * b[None, :])
        + rho * kl(plan.sum(1), a)
        + rho * kl(plan.sum(0), b)
    )


def geomloss_settings(eps: float, rho: float) -> list[Setting]:
    """GeomLoss 0.3.1, batched: p=1 uses C = |x - y|, eps = blur^p, rho = reach^p.

    Its eps-annealing ends at eps = blur after log(diameter / blur) / log(1 / scaling)
    steps: ``scaling`` is its accuracy knob.
    """

    def solver(scaling: float) -> Solver:
        loss = SamplesLoss("sinkhorn", p=1, blur=eps, reach=rho, debias=False, scaling=scaling, backend="tensorized")
        return lambda x, y: loss(x, y)

    scalings = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
    return [Setting(f"scaling={s:g}", "geomloss", solver(s)) for s in scalings]


class OttWorker:
    """benchmarks/ott_worker.py under another Python (one with ott-jax), driven line by line."""

    def __init__(self, python: str) -> None:
        script = Path(__file__).resolve().parent / "ott_worker.py"
        self.process = subprocess.Popen(
            [python, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )
        self.folder = Path(tempfile.mkdtemp(prefix="bench_ot_"))
        self.versions = ""
        self.problem: Problem | None = None

    def ask(self, request: dict[str, object]) -> dict[str, object]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(request) + "\n")
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the OTT worker stopped (exit {self.process.wait()}); is ott-jax installed there?")
        return json.loads(line)

    def load(self, problem: Problem, eps: float, rho: float) -> None:
        path = self.folder / "problem.npz"
        np.savez(path, x=problem.x.numpy(), y=problem.y.numpy())
        answer = self.ask({"op": "load", "path": str(path), "eps": eps, "rho": rho})
        self.versions = f"OTT-JAX {answer['ott']}, JAX {answer['jax']}"
        self.problem = problem

    def run(self, threshold: float, keep: bool = False) -> tuple[float, float, torch.Tensor, torch.Tensor]:
        """(CPU s, wall s, values, gradient) of one run; the values and gradient only when ``keep``."""
        out = self.folder / "result.npz"
        answer = self.ask({"op": "run", "threshold": threshold, "out": str(out) if keep else None})
        values = grad = torch.empty(0)
        if keep:
            result = np.load(out)
            values, grad = torch.from_numpy(result["values"]), torch.from_numpy(result["grad"])
        return float(answer["cpu"]), float(answer["wall"]), values, grad  # type: ignore[arg-type]

    def masses(self, threshold: float) -> list[float]:
        """The total mass of the plan of each pair of the loaded problem."""
        return list(self.ask({"op": "mass", "threshold": threshold})["mass"])  # type: ignore[call-overload]

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


def ott_settings(worker: OttWorker, problem: Problem) -> list[Setting]:
    """OTT-JAX (ott_worker.py) at decreasing thresholds on its marginal error. The worker holds the
    clouds of ``problem``: a setting's solve ignores the tensors it is given but for their gradient's
    shape, which its backward fills with the worker's gradient (of each pair's value with respect to
    that pair's clouds: the pairs are independent).
    """

    def solver(threshold: float) -> Solver:
        class Ott(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
                assert worker.problem is problem, "the worker holds another problem"
                _, _, values, grad = worker.run(threshold, keep=True)
                half = x.numel()
                ctx.save_for_backward(grad[:half].view_as(x).to(x.dtype), grad[half:].view_as(y).to(y.dtype))
                return values.to(x.dtype)

            @staticmethod
            def backward(ctx, grad_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
                grad_x, grad_y = ctx.saved_tensors
                scale = grad_values[:, None, None]
                return scale * grad_x, scale * grad_y

        return lambda x, y: Ott.apply(x, y)

    def timer(threshold: float) -> Callable[[], tuple[float, float]]:
        return lambda: worker.run(threshold)[:2]

    thresholds = (3e-1, 1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 1e-4, 1e-5)
    return [Setting(f"threshold={t:g}", "ott", solver(t), timer(t)) for t in thresholds]


# ----------------------------------------------------------------------------- measuring


def timed_run(setting: Setting, problem: Problem) -> tuple[float, float]:
    """(CPU, wall) seconds of one forward + backward of ``setting`` on ``problem``."""
    if setting.timer is not None:
        return setting.timer()
    start_cpu, start_wall = time.process_time(), time.perf_counter()
    run_once(setting.solve, problem.x, problem.y)
    return time.process_time() - start_cpu, time.perf_counter() - start_wall


def median_ms(setting: Setting, problem: Problem, repeats: int) -> float:
    """Median CPU milliseconds of ``repeats`` runs."""
    return 1e3 * statistics.median(timed_run(setting, problem)[0] for _ in range(repeats))


def choose(
    method: str, settings: list[Setting], problem: Problem, target: float, grad_target: float = math.inf
) -> Choice:
    """Cheapest setting reaching ``target`` on the value with a finite gradient (within
    ``grad_target`` if given): the first one per family, then the fastest family.
    """
    first_per_family: dict[str, Choice] = {}
    best_error = Choice(method, None, math.inf, math.inf)
    for setting in settings:
        if setting.family in first_per_family:
            continue
        value_error, grad_error = errors(problem, setting.solve)
        # A NaN gradient fails any target (NaN <= x is False): it cannot train a model.
        if value_error <= target and grad_error <= grad_target:
            first_per_family[setting.family] = Choice(method, setting, value_error, grad_error)
        elif value_error < best_error.value_error:
            best_error = Choice(method, None, value_error, grad_error)
    if not first_per_family:
        return best_error
    candidates = list(first_per_family.values())
    if len(candidates) == 1:
        return candidates[0]
    timed = [(median_ms(c.setting, problem, 3), c) for c in candidates if c.setting is not None]
    return min(timed, key=lambda pair: pair[0])[1]


def time_choices(choices: list[Choice], problem: Problem, repeats: int) -> list[Choice]:
    """CPU and wall times of the chosen settings, in rounds that run every method once.

    With one thread, the CPU time of this process is what the run costs; the wall time
    also counts the waits for the cores that the other jobs of a shared machine cause.
    """
    runnable = [c for c in choices if c.setting is not None]
    for c in runnable:  # warm-up
        run_once(c.setting.solve, problem.x, problem.y)
    cpu: dict[str, list[float]] = {c.method: [] for c in runnable}
    wall: dict[str, list[float]] = {c.method: [] for c in runnable}
    for _ in range(repeats):
        for c in runnable:
            cpu_seconds, wall_seconds = timed_run(c.setting, problem)
            cpu[c.method].append(cpu_seconds)
            wall[c.method].append(wall_seconds)
    return [
        Choice(
            c.method,
            c.setting,
            c.value_error,
            c.grad_error,
            1e3 * statistics.median(cpu[c.method]),
            tuple(cpu[c.method]),
            tuple(wall[c.method]),
        )
        if c.setting is not None
        else c
        for c in choices
    ]


def _ours_options(choice: Choice) -> tuple[float, int]:
    """(tol, check_every) of our chosen setting, parsed back from its label."""
    if choice.setting is None:
        return 1e-3, 10
    options = dict(part.split("=") for part in choice.setting.label.split())
    return float(options["tol"]), int(options["check_every"])


def warm_start(problem: Problem, eps: float, rho: float, ours: Choice) -> tuple[Choice, int, int]:
    """Our chosen setting started from the previous training step's potentials.

    The previous step saw the first clouds 1% away (a random move); the solve is timed
    in the same rounds as the other methods. Returns the choice (its errors against the
    converged value) and the iterations cold and warm.
    """
    tol, check_every = _ours_options(ours)
    options = {"eps": eps, "rho": rho, "tol": tol, "check_every": check_every}
    generator = torch.Generator().manual_seed(1)
    move = 0.01 * torch.randn(problem.x.shape, generator=generator) / math.sqrt(problem.x.shape[-1])
    previous = sinkhorn_unbalanced(pairwise_cost(problem.x - move, problem.y), **options)
    init = (previous.f, previous.g)

    def solve(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return sinkhorn_unbalanced(pairwise_cost(x, y), init=init, **options).value

    cost = pairwise_cost(problem.x, problem.y)
    iterations = (sinkhorn_unbalanced(cost, **options).n_iter, sinkhorn_unbalanced(cost, init=init, **options).n_iter)
    value_error, grad_error = errors(problem, solve)
    return Choice("warm", Setting("warm", "warm", solve), value_error, grad_error), *iterations


# ----------------------------------------------------------------------------- report


def geomloss_agreement(eps: float, rho: float, d2: int, seed: int) -> float:
    """Relative gap between GeomLoss (scaling 0.999, float64) and our converged value."""
    problem = make_problem(3, 64, d2, eps, rho, seed)
    loss = SamplesLoss("sinkhorn", p=1, blur=eps, reach=rho, debias=False, scaling=0.999, backend="tensorized")
    theirs = loss(problem.x.double(), problem.y.double())
    return ((theirs - problem.reference) / problem.reference).abs().max().item()


def ott_agreement(worker: OttWorker, eps: float, rho: float, d2: int, seed: int) -> str:
    """OTT's plans at its tightest threshold against the minimiser of the common objective (ours,
    float64, whose value is the relaxed objective on its plan: tests/ot): their total masses and the
    relative gap of the values, on the M = 3, n = 64 problem.
    """
    problem = make_problem(3, 64, d2, eps, rho, seed)
    worker.load(problem, eps, rho)
    theirs = worker.masses(1e-5)
    values = worker.run(1e-5, keep=True)[2]
    cost = pairwise_cost(problem.x.double(), problem.y.double())
    solution = sinkhorn_unbalanced(cost, eps=eps, rho=rho, tol=1e-12, max_iter=100_000)
    weight = 1.0 / (cost.shape[1] * cost.shape[2])
    ours = (torch.exp((solution.f[:, :, None] + solution.g[:, None, :] - cost) / eps) * weight).sum((1, 2))
    gap = ((values - problem.reference) / problem.reference).abs().max().item()
    return (
        f"at threshold 1e-5 its plans carry a total mass of {', '.join(f'{m:.3f}' for m in theirs)} against "
        f"{', '.join(f'{m:.3f}' for m in ours.tolist())} for the minimiser of the objective (M=3, n=64), while its "
        f"value differs from ours by {gap:.1e} (relative)"
    )


def machine_line(threads: int) -> str:
    model = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return (
        f"{model}, {os.cpu_count()} logical cores, {threads} torch thread(s); Python {platform.python_version()}, "
        f"torch {torch.__version__}, POT {ot.__version__}, GeomLoss {sys.modules['geomloss'].__version__}"
    )


def format_table(rows: list[dict[str, object]]) -> list[str]:
    lines = [
        "| M | P | n | ours ms | POT ms | GeomLoss ms | OTT ms | POT / ours | GeomLoss / ours | OTT / ours "
        "| ours warm ms | wall: POT / ours | wall: GeomLoss / ours | wall: OTT / ours |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        ours, pot, geo, ott, warm = row["ours"], row["pot"], row["geomloss"], row["ott"], row["warm"]
        assert all(isinstance(c, Choice) for c in (ours, pot, geo, ott, warm))
        lines.append(
            f"| {row['M']} | {row['P']} | {row['n']} | {_ms(ours)} | {_ms(pot)} | {_ms(geo)} | {_ms(ott)} "
            f"| {_ratio(pot, ours)} | {_ratio(geo, ours)} | {_ratio(ott, ours)} | {_ms(warm)} "
            f"| {_ratio(pot, ours, wall=True)} | {_ratio(geo, ours, wall=True)} | {_ratio(ott, ours, wall=True)} |"
        )
    return lines


def format_settings(rows: list[dict[str, object]]) -> list[str]:
    lines = [
        "| M | n | ours: setting (value err, grad err) | POT | GeomLoss | OTT | ours warm: iterations cold -> warm "
        "(value err, grad err) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        cells = []
        for key in ("ours", "pot", "geomloss", "ott"):
            c = row[key]
            assert isinstance(c, Choice)
            label = c.setting.label if c.setting is not None else _missing(c)
            cells.append(f"{label} ({c.value_error:.1e}, {c.grad_error:.1e})")
        lines.append(
            f"| {row['M']} | {row['n']} | {' | '.join(cells)} "
            f"| {row['cold_iters']} -> {row['warm_iters']} ({row['warm'].value_error:.1e}, "
            f"{row['warm'].grad_error:.1e}) "
            "|"
        )
    return lines


def _missing(choice: Choice) -> str:
    return "not run" if math.isnan(choice.value_error) else "target not reached"


def _ms(choice: Choice) -> str:
    return f"{choice.median_ms:.2f}" if choice.setting is not None else "n/a"


def _ratio(other: Choice, ours: Choice, wall: bool = False) -> str:
    """Median over the rounds of the ratio of the two times measured in the same round."""
    if other.setting is None or ours.setting is None:
        return "n/a"
    pairs = zip(other.wall_times, ours.wall_times, strict=True) if wall else zip(other.times, ours.times, strict=True)
    return f"{statistics.median(t / o for t, o in pairs):.1f}x"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="M=3, n in {32, 64}, few repeats; prints only")
    parser.add_argument("--eps", type=float, default=0.05, help="entropic regularisation (cost units)")
    parser.add_argument("--rho", type=float, default=1.0, help="marginal relaxation (cost units)")
    parser.add_argument("--d2", type=int, default=32, help="dimension of the reduced features")
    parser.add_argument("--target", type=float, default=1e-3, help="relative accuracy of the value")
    parser.add_argument(
        "--grad-target",
        type=float,
        default=math.inf,
        help="also require this relative L2 accuracy of the gradient (default: none)",
    )
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds (default 11, quick 5)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=None, help=f"markdown table (default {RESULTS})")
    parser.add_argument(
        "--ott-python",
        default=None,
        help="a Python with ott-jax (e.g. .ott/bin/python after `python -m venv .ott && .ott/bin/pip install "
        "ott-jax`): OTT-JAX is timed in the same rounds (benchmarks/ott_worker.py); default: not run",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    repeats = args.repeats or (5 if args.quick else 11)
    grid = [(3, 32), (3, 64)] if args.quick else [(m, n) for m in (2, 3, 4) for n in (32, 64, 128, 256)]
    output = args.output if args.output is not None else (None if args.quick else RESULTS)

    started = time.perf_counter()
    worker = OttWorker(args.ott_python) if args.ott_python else None
    rows = []
    for modalities, n in grid:
        problem = make_problem(modalities, n, args.d2, args.eps, args.rho, args.seed)
        ours_choice = choose("ours", ours_settings(args.eps, args.rho), problem, args.target, args.grad_target)
        ott_choice = Choice("ott", None, math.nan, math.nan)
        if worker is not None:
            worker.load(problem, args.eps, args.rho)
            ott_choice = choose("ott", ott_settings(worker, problem), problem, args.target, args.grad_target)
        choices = [
            ours_choice,
            choose("pot", pot_settings(args.eps, args.rho), problem, args.target, args.grad_target),
            choose("geomloss", geomloss_settings(args.eps, args.rho), problem, args.target, args.grad_target),
            ott_choice,
        ]
        warm, cold_iters, warm_iters = warm_start(problem, args.eps, args.rho, ours_choice)
        ours, pot, geo, ott, warm = time_choices([*choices, warm], problem, repeats)
        row = {
            "M": modalities,
            "P": problem.x.shape[0],
            "n": n,
            "ours": ours,
            "pot": pot,
            "geomloss": geo,
            "ott": ott,
            "warm": warm,
            "cold_iters": cold_iters,
            "warm_iters": warm_iters,
        }
        rows.append(row)
        print(format_table([row])[-1], flush=True)

    ott_note = ""
    if worker is not None:
        ott_note = ott_agreement(worker, args.eps, args.rho, args.d2, args.seed)
        worker.close()
    median_cost = pairwise_cost(problem.x, problem.y).median().item()
    agreement = geomloss_agreement(args.eps, args.rho, args.d2, args.seed)
    report = [
        "# Optimal transport benchmark (`make bench`)",
        "",
        f"Forward + backward of L_dc's transport problems: M modalities, P = M(M-1)/2 pairs of clouds of n "
        f"points in d2 = {args.d2} dimensions, unbalanced entropic OT with eps = {args.eps:g}, rho = {args.rho:g} "
        f"(median cost {median_cost:.2f}, so eps = {args.eps / median_cost:.3f} x median cost), Euclidean "
        f"ground cost, gradients to the points. Float32, one thread. Times: milliseconds of CPU time of the "
        f"benchmark process, medians of {repeats} rounds that each run every method once; a ratio is the median "
        "over the rounds of the ratio of the two times of the same round. The last three columns give the same "
        "ratios in wall-clock time, which on this shared machine also counts waits for the cores.",
        "",
        *format_table(rows),
        "",
        f"Each method at the cheapest of its settings whose value is within {args.target:g} relative error of the "
        "converged value (ours, float64, tol 1e-12) on every pair and whose gradient is finite (a NaN gradient "
        "cannot train a model)"
        + (f" and within {args.grad_target:g}" if math.isfinite(args.grad_target) else "")
        + "; value error and gradient error (relative L2 norm of the gradient with respect to all points) of the "
        "chosen setting, or of the most accurate setting when none qualifies (`nan`: the backward produced NaN):",
        "",
        *format_settings(rows),
        "",
        "Method:",
        "",
        f"* Machine: {machine_line(args.threads)}. The machine is shared with other jobs (load "
        f"{os.getloadavg()[0]:.1f} on its {os.cpu_count()} cores at the end of this run).",
        "* ours: `sinkhorn_unbalanced(pairwise_cost(x, y), eps, rho, tol, check_every)` on all pairs at once, "
        "`.value` (envelope-theorem gradient); `tol` on the marginal residual, checked every `check_every` "
        "iterations (1, 2, 4 or the default 10 tried).",
        "* POT: `ot.unbalanced.sinkhorn_unbalanced` (torch backend, `reg_type='kl'`), one call per pair, "
        "autograd through its iterations; the relaxed objective (generalised KL) is evaluated on its plan, because "
        "POT's `returnCost='total'` omits the mass terms of the generalised KL and is 0 at the optimum. The "
        f"methods `sinkhorn`, `sinkhorn_stabilized` and `sinkhorn_translation_invariant` are all tried (at most "
        f"{POT_MAX_ITER} iterations: autograd keeps them all); POT's batched solver (`ot.batch`) is balanced only.",
        "* GeomLoss: `SamplesLoss('sinkhorn', p=1, blur=eps, reach=rho, debias=False, scaling=s, "
        "backend='tensorized')` on the (P, n, d2) batch. For p=1 its cost is |x - y| and eps = blur, rho = reach; "
        f"its value is the same quantity as ours: at scaling 0.999 in float64 it differs from our converged value "
        f"by {agreement:.1e} (relative, M=3, n=64).",
        (
            f"* OTT-JAX ({worker.versions}): `Sinkhorn(threshold=t)` on `LinearProblem(PointCloud(x, y, "
            "cost_fn=Euclidean(), epsilon=eps), tau_a=tau, tau_b=tau)`, tau = rho / (rho + eps) (its documentation's "
            "marginal penalty rho KL), value `reg_ot_cost`, `jax.value_and_grad` of the vmapped batch (OTT's "
            "implicit differentiation), jitted once per threshold, XLA on one thread, in a process of its own "
            "(`benchmarks/ott_worker.py`) whose CPU and wall times of each run are reported; the thresholds "
            f"3e-1 down to 1e-5 are tried. Its fixed point is not the minimiser of the objective that ours and POT "
            f"solve (tests/ot), which its documentation also states: {ott_note}; so a setting can reach the value "
            "target while its gradient stays far from the common one."
            if worker is not None
            else "* OTT-JAX: not run (`--ott-python`: a Python with ott-jax)."
        ),
        "* ours warm: our setting started from the potentials of the previous step (`init=(f, g)`, the first "
        "clouds 1% away), the situation of a training loop; timed in the same rounds.",
        f"* Wall time of this run: {time.perf_counter() - started:.0f} s.",
    ]
    text = "\n".join(report) + "\n"
    print()
    print(text)
    if output is not None:
        from iidfusion.engine.outputs import write_text_atomic

        write_text_atomic(output, text)
        print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
