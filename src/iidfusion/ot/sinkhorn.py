"""Batched unbalanced entropic optimal transport (DESIGN.md 1.2, step 3).

For each of P problems with cost C (n x m) and positive weights a (n,), b (m,), the solver
returns the optimal value of the relaxed primal problem

    W~ = min_{T >= 0} <T, C> + eps KL(T | a b^T) + rho KL(T 1 | a) + rho KL(T^T 1 | b),

with KL the generalised Kullback-Leibler divergence KL(p | q) = sum p log(p / q) - p + q
(Sejourne et al. 2019; Chizat et al. 2018). ``rho = inf`` removes the last two terms and
imposes the marginals exactly (balanced entropic OT). The optimal plan has the form
T_ij = a_i b_j exp((f_i + g_j - C_ij) / eps) for dual potentials f, g, which are found by the
damped Sinkhorn fixed point (tau = rho / (rho + eps))

    f_i = -tau eps log sum_j b_j exp((g_j - C_ij) / eps),   and symmetrically for g.

Engineering (DESIGN.md 1.2, "Engineering of the solver"):

* The potentials are kept in the log domain; the iterations themselves run on the scaling
  form u = exp((f - f0) / eps), v = exp((g - g0) / eps) against the kernel
  K = a b^T exp((f0 + g0 - C) / eps) of the last "absorbed" potentials f0, g0 (Schmitzer's
  stabilisation, 2019): two batched matrix-vector products per iteration instead of two
  log-sum-exps over the whole (P, n, m) tensor. The scalings are absorbed into the
  potentials, and the kernel rebuilt from them, whenever they drift away from 1, so nothing
  over- or underflows; a block that still produces non-finite scalings is redone with exact
  log-sum-exp updates.
* A cold start anneals eps geometrically from the largest cost down to the target
  (eps-scaling, Kosowsky and Yuille 1994; GeomLoss), one iteration per level, which cuts the
  number of iterations at small eps by an order of magnitude. A warm start (``init``) skips it.
* The tolerance is checked every ``check_every`` iterations only: one host synchronisation
  per check, none per iteration.
* Iterations run without autograd. ``value`` is attached to ``cost`` through the envelope
  theorem (d value / d C = T*), so backward costs one multiplication and memory does not grow
  with the number of iterations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["SinkhornResult", "sinkhorn_unbalanced"]

# Scalings are absorbed into the potentials once |log u| or |log v| exceeds this: far from
# the overflow of float32 (log 3e38 = 88), close enough to 1 to keep the products accurate.
_ABSORB_LOG_SCALING = 10.0
# Geometric ratio between two successive eps of the annealing (cold start only).
_ANNEALING_RATIO = 0.5
# Iterations between two translations of the potentials (unbalanced problems only).
_TRANSLATE_EVERY = 5


@dataclass(frozen=True)
class SinkhornResult:
    """Solution of a batch of unbalanced entropic OT problems.

    Shapes are per problem, ``(P,)`` for a ``(P, n, m)`` cost; a single ``(n, m)`` cost gives
    0-d tensors (and ``plan`` ``(n, m)``, ``f`` ``(n,)``, ``g`` ``(m,)``). Tensors are in the
    dtype of ``cost``.

    Attributes:
        value: optimal value of the relaxed objective (module docstring), differentiable with
            respect to ``cost``: its gradient is the plan (envelope theorem), exact at
            convergence. This is what L_dc sums.
        transport_cost: ``<T, C>`` of the optimal plan, a detached diagnostic (its gradient
            would not be the plan).
        plan: the optimal plan T, detached; None unless ``return_plan=True``.
        f: dual potential on the rows (detached), in cost units; reusable as a warm start.
        g: dual potential on the columns (detached).
        n_iter: Sinkhorn iterations run (annealing included).
        marginal_error: ``(|T 1 - a e^{-f/rho}|_1 + |T^T 1 - b e^{-g/rho}|_1) / sum(a)``, the
            violation of the optimality conditions on the marginals (for ``rho = inf`` the
            plain marginal error); 0 at the exact solution.
    """

    value: Tensor
    transport_cost: Tensor
    plan: Tensor | None
    f: Tensor
    g: Tensor
    n_iter: int
    marginal_error: Tensor


@dataclass(frozen=True)
class _Problem:
    """Validated inputs, batched to (P, n, m) and cast to the working dtype."""

    cost: Tensor  # (P, n, m)
    a: Tensor  # (P, n)
    b: Tensor  # (P, m)
    eps: float
    rho: float
    cost_min: float
    cost_range: float  # max C - min C over the batch: the first eps of the annealing
    log_a: Tensor
    log_b: Tensor
    mass_a: Tensor  # (P,) sum(a), the scale of the marginal residuals


def _damping(rho: float, eps: float) -> float:
    """tau = rho / (rho + eps): the exponent of the unbalanced Sinkhorn update (1 if balanced)."""
    return 1.0 if math.isinf(rho) else rho / (rho + eps)


def sinkhorn_unbalanced(
    cost: Tensor,
    a: Tensor | None = None,
    b: Tensor | None = None,
    *,
    eps: float,
    rho: float = float("inf"),
    max_iter: int = 1000,
    tol: float = 1e-9,
    check_every: int = 10,
    return_plan: bool = False,
    init: tuple[Tensor, Tensor] | None = None,
) -> SinkhornResult:
    """Solve P unbalanced entropic OT problems at once (module docstring for the objective).

    Args:
        cost: ``(P, n, m)`` or ``(n, m)`` finite costs.
        a: positive row weights ``(n,)`` or ``(P, n)``; uniform ``1/n`` by default.
        b: positive column weights ``(m,)`` or ``(P, m)``; uniform ``1/m`` by default.
        eps: entropic regularisation, in cost units (> 0).
        rho: marginal relaxation, in cost units (> 0); ``inf`` gives balanced OT.
        max_iter: iteration budget (annealing included).
        tol: stop once every problem's marginal residual (``marginal_error`` before the last
            column update, relative to ``sum(a)``) is below ``tol``. It is floored at 64
            machine epsilons of the working dtype (float32 cannot resolve 1e-9).
        check_every: iterations between two convergence checks (host synchronisations).
        return_plan: also return the ``(P, n, m)`` plan.
        init: ``(f, g)`` potentials of a previous solve (same shapes as the result's) to
            warm-start from, e.g. between two training steps whose costs differ little.

    Returns:
        A :class:`SinkhornResult`. Inputs in float16/bfloat16 are solved in float32 and
        returned in their dtype; float64 is solved in float64.
    """
    problem, single = _validate(cost, a, b, eps=eps, rho=rho)
    _validate_options(max_iter=max_iter, tol=tol, check_every=check_every)
    start = _validate_init(init, problem, single)
    with torch.no_grad():
        f, g, n_iter = _solve(
            problem, start, max_iter=max_iter, tol=tol, check_every=check_every
        )
        plan, value, transport_cost, marginal_error = _evaluate(problem, f, g)
    out_dtype = cost.dtype
    value = _EnvelopeValue.apply(cost, value.to(out_dtype), plan.view(cost.shape))

    def shaped(t: Tensor) -> Tensor:
        t = t.to(out_dtype)
        return t.squeeze(0) if single else t

    return SinkhornResult(
        value=value.squeeze(0) if single else value,
        transport_cost=shaped(transport_cost),
        plan=shaped(plan) if return_plan else None,
        f=shaped(f),
        g=shaped(g),
        n_iter=n_iter,
        marginal_error=shaped(marginal_error),
    )


class _EnvelopeValue(torch.autograd.Function):
    """Identity on ``value`` whose gradient with respect to ``cost`` is ``plan``.

    By the envelope theorem the derivative of the optimal value of the (strictly convex)
    relaxed problem with respect to C is the optimal plan; only the plan is saved.
    """

    @staticmethod
    def forward(ctx, cost: Tensor, value: Tensor, plan: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(plan)
        ctx.cost_dtype = cost.dtype
        return value.clone()

    @staticmethod
    def backward(ctx, grad_value: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        (plan,) = ctx.saved_tensors
        grad = grad_value.to(plan.dtype)[..., None, None] * plan
        return grad.to(ctx.cost_dtype), None, None


# --------------------------------------------------------------------------- validation


def _working_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _validate(
    cost: Tensor, a: Tensor | None, b: Tensor | None, *, eps: float, rho: float
) -> tuple[_Problem, bool]:
    if not isinstance(cost, Tensor):
        raise ValueError(f"cost must be a torch.Tensor, got {type(cost).__name__}")
    if cost.ndim not in (2, 3):
        raise ValueError(f"cost must have shape (P, n, m) or (n, m), got {tuple(cost.shape)}")
    if not cost.is_floating_point():
        raise ValueError(f"cost must be floating point, got {cost.dtype}")
    single = cost.ndim == 2
    cost3 = cost.unsqueeze(0) if single else cost
    n_problems, n, m = cost3.shape
    if n_problems == 0 or n == 0 or m == 0:
        raise ValueError(
            f"cost has an empty dimension (P={n_problems}, n={n}, m={m}): "
            "each problem needs at least one point in each cloud"
        )
    # max and min propagate NaN and reach +-inf: one pass, one host sync checks finiteness.
    cost_min, cost_max = torch.stack([cost.amin(), cost.amax()]).tolist()
    if not (math.isfinite(cost_min) and math.isfinite(cost_max)):
        raise ValueError("cost contains NaN or infinite entries")
    if not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be a finite number > 0, got {eps!r}")
    if not (isinstance(rho, (int, float)) and not math.isnan(rho) and rho > 0):
        raise ValueError(f"rho must be > 0 (or inf for balanced OT), got {rho!r}")
    work = _working_dtype(cost.dtype)
    a = _weights(a, "a", n_problems, n, cost3, work)
    b = _weights(b, "b", n_problems, m, cost3, work)
    problem = _Problem(
        cost=cost3.detach().to(work),
        a=a,
        b=b,
        eps=float(eps),
        rho=float(rho),
        cost_min=cost_min,
        cost_range=cost_max - cost_min,
        log_a=a.log(),
        log_b=b.log(),
        mass_a=a.sum(-1),
    )
    return problem, single


def _weights(
    w: Tensor | None, name: str, n_problems: int, size: int, cost: Tensor, work: torch.dtype
) -> Tensor:
    if w is None:
        return torch.full((n_problems, size), 1.0 / size, dtype=work, device=cost.device)
    if not isinstance(w, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor or None, got {type(w).__name__}")
    if w.shape not in ((size,), (n_problems, size)):
        raise ValueError(
            f"{name} must have shape ({size},) or ({n_problems}, {size}) to match cost "
            f"{tuple(cost.shape)}, got {tuple(w.shape)}"
        )
    w = w.detach().to(device=cost.device, dtype=work)
    if not bool(torch.isfinite(w).all()):
        raise ValueError(f"{name} contains NaN or infinite weights")
    if not bool((w > 0).all()):
        raise ValueError(f"{name} must be > 0 everywhere (drop points of zero weight instead)")
    return w.expand(n_problems, size)


def _validate_options(*, max_iter: int, tol: float, check_every: int) -> None:
    if not (isinstance(max_iter, int) and max_iter >= 1):
        raise ValueError(f"max_iter must be an int >= 1, got {max_iter!r}")
    if not (isinstance(check_every, int) and check_every >= 1):
        raise ValueError(f"check_every must be an int >= 1, got {check_every!r}")
    if not (isinstance(tol, (int, float)) and tol >= 0):
        raise ValueError(f"tol must be >= 0, got {tol!r}")


def _validate_init(
    init: tuple[Tensor, Tensor] | None, problem: _Problem, single: bool
) -> tuple[Tensor, Tensor] | None:
    if init is None:
        return None
    if not (isinstance(init, (tuple, list)) and len(init) == 2):
        raise ValueError("init must be a pair (f, g) of potentials from a previous result")
    cost = problem.cost
    out = []
    for name, pot, size in (("f", init[0], cost.shape[1]), ("g", init[1], cost.shape[2])):
        expected = (size,) if single else (cost.shape[0], size)
        if not isinstance(pot, Tensor) or tuple(pot.shape) != expected:
            shape = tuple(pot.shape) if isinstance(pot, Tensor) else type(pot).__name__
            raise ValueError(f"init potential {name} must have shape {expected}, got {shape}")
        pot = pot.detach().to(device=cost.device, dtype=cost.dtype).reshape(cost.shape[0], size)
        if not bool(torch.isfinite(pot).all()):
            raise ValueError(f"init potential {name} contains NaN or infinite values")
        out.append(pot)
    return out[0], out[1]


# --------------------------------------------------------------------------- iterations


class _Scaling:
    """Scaling-form iterations around the absorbed potentials ``f0``, ``g0`` at one eps.

    With f = f0 + eps log u and g = g0 + eps log v, the log-domain update of f becomes
    u = (A / K v)^tau with K = a b^T exp((f0 + g0 - C) / eps) (the plan at f0, g0) and
    A = a exp(-f0 / rho), the fixed-point row sums; symmetrically for v.
    """

    def __init__(self, problem: _Problem, f0: Tensor, g0: Tensor, eps: float) -> None:
        self.problem, self.eps, self.f0, self.g0 = problem, eps, f0, g0
        self.tau = _damping(problem.rho, eps)
        log_k = (f0 / eps + problem.log_a).unsqueeze(2) + (g0 / eps + problem.log_b).unsqueeze(1)
        kernel = _exp_flushed(torch.add(log_k, problem.cost, alpha=-1.0 / eps))
        # Both layouts, so that each product is a row vector times a contiguous matrix.
        self.kernel, self.kernel_t = kernel, kernel.transpose(1, 2).contiguous()
        if math.isinf(problem.rho):
            row_target, col_target = problem.a, problem.b
        else:
            row_target = torch.exp(problem.log_a - f0 / problem.rho)
            col_target = torch.exp(problem.log_b - g0 / problem.rho)
        self.row_target, self.col_target = row_target.unsqueeze(1), col_target.unsqueeze(1)
        self.u = torch.ones_like(self.row_target)  # (P, 1, n)
        self.v = torch.ones_like(self.col_target)  # (P, 1, m)

    def iterate(self, count: int) -> None:
        u, v, tau = self.u, self.v, self.tau
        translate = not math.isinf(self.problem.rho)
        for k in range(count):
            u = torch.div(self.row_target, torch.bmm(v, self.kernel_t))
            if tau != 1.0:
                u.pow_(tau)
            v = torch.div(self.col_target, torch.bmm(u, self.kernel))
            if tau != 1.0:
                v.pow_(tau)
            if translate and (k % _TRANSLATE_EVERY == _TRANSLATE_EVERY - 1 or k == count - 1):
                u, v = self._translate(u, v)
        self.u, self.v = u, v

    def _translate(self, u: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Exact dual ascent along (f + lambda, g - lambda) (Sejourne et al. 2022).

        With KL marginals the Sinkhorn updates contract this direction only by tau^2 per
        iteration, which stalls the solver when rho >> eps; its optimum is closed-form:
        lambda = rho/2 log(<a, e^{-f/rho}> / <b, e^{-g/rho}>). The step is clipped (a clipped
        step towards the maximum of a concave function still ascends) so that the scalings
        stay representable.
        """
        power = -self.eps / self.problem.rho
        row_mass = (self.row_target * u.pow(power)).sum(-1, keepdim=True)
        col_mass = (self.col_target * v.pow(power)).sum(-1, keepdim=True)
        log_shift = (row_mass / col_mass).log_().mul_(self.problem.rho / (2.0 * self.eps))
        shift = log_shift.clamp_(-_ABSORB_LOG_SCALING, _ABSORB_LOG_SCALING).exp_()
        return u * shift, v / shift

    def check(self) -> tuple[float, float]:
        """(largest row residual over the batch, largest |log u|, |log v|): one host sync.

        The residual is |T 1 - a e^{-f/rho}|_1 / sum(a), the violation of the optimality
        condition on the rows; the column update has just made the columns' exact.
        """
        row_sum = self.u * torch.bmm(self.v, self.kernel_t)
        target = self.row_target
        if not math.isinf(self.problem.rho):
            target = target * self.u.pow(-self.eps / self.problem.rho)
        residual = ((row_sum - target).abs().sum(-1).squeeze(1) / self.problem.mass_a).amax()
        drift = torch.maximum(self.u.log().abs().amax(), self.v.log().abs().amax())
        residual_value, drift_value = torch.stack([residual, drift]).tolist()
        return residual_value, drift_value

    def potentials(self) -> tuple[Tensor, Tensor]:
        return (
            self.f0 + self.eps * self.u.squeeze(1).log(),
            self.g0 + self.eps * self.v.squeeze(1).log(),
        )


def _exp_flushed(log_values: Tensor) -> Tensor:
    """exp, in place, with results that would be subnormal (or nearly) set to 0.

    At small eps most kernel entries are far below the largest of their row; computed as
    subnormal numbers they would slow every later product by two orders of magnitude on a
    CPU while adding nothing to the sums. The margin keeps products with scalings of up to
    exp(2 * _ABSORB_LOG_SCALING) out of the subnormal range as well.
    """
    floor = math.log(torch.finfo(log_values.dtype).tiny) + 4 * _ABSORB_LOG_SCALING
    return log_values.masked_fill_(log_values < floor, -math.inf).exp_()


def _log_domain_iteration(problem: _Problem, f: Tensor, g: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """One exact Sinkhorn iteration with log-sum-exp (stable for any potentials)."""
    tau = _damping(problem.rho, eps)
    scaled = problem.cost / eps
    f = -tau * eps * torch.logsumexp((g / eps + problem.log_b).unsqueeze(1) - scaled, dim=2)
    g = -tau * eps * torch.logsumexp((f / eps + problem.log_a).unsqueeze(2) - scaled, dim=1)
    return f, g


def _annealing_schedule(problem: _Problem, budget: int) -> list[float]:
    """eps levels above the target, from the cost range down by ``_ANNEALING_RATIO``."""
    levels = []
    level = problem.cost_range
    while level > problem.eps / _ANNEALING_RATIO:
        levels.append(level)
        level *= _ANNEALING_RATIO
    # Keep the finest levels if the budget is small: the target eps needs iterations too.
    return levels[len(levels) - min(len(levels), budget // 2) :]


def _solve(
    problem: _Problem,
    start: tuple[Tensor, Tensor] | None,
    *,
    max_iter: int,
    tol: float,
    check_every: int,
) -> tuple[Tensor, Tensor, int]:
    cost = problem.cost
    tol = max(tol, 64 * torch.finfo(cost.dtype).eps)
    n_iter = 0
    if start is None:
        # f = min C keeps (f + g - C) / eps in [-1, 0] at the first level whatever the offset.
        f = torch.full(cost.shape[:2], problem.cost_min, dtype=cost.dtype, device=cost.device)
        g = torch.zeros((cost.shape[0], cost.shape[2]), dtype=cost.dtype, device=cost.device)
        for level in _annealing_schedule(problem, max_iter):
            step = _Scaling(problem, f, g, level)
            step.iterate(1)
            f, g = step.potentials()
            n_iter += 1
    else:
        # One exact iteration makes warm potentials consistent with this cost before the
        # kernel is built from them.
        f, g = _log_domain_iteration(problem, *start, problem.eps)
        n_iter += 1
    step = _Scaling(problem, f, g, problem.eps)
    good = (f, g)
    while n_iter < max_iter:
        count = min(check_every, max_iter - n_iter)
        step.iterate(count)
        n_iter += count
        residual, drift = step.check()
        if not (math.isfinite(residual) and math.isfinite(drift)):
            # The scalings left the floating-point range: redo this block exactly.
            f, g = good
            for _ in range(count):
                f, g = _log_domain_iteration(problem, f, g, problem.eps)
            step = _Scaling(problem, f, g, problem.eps)
            good = (f, g)
            continue
        if residual <= tol:
            break
        if drift > _ABSORB_LOG_SCALING:
            step = _Scaling(problem, *step.potentials(), problem.eps)
        good = step.potentials()
    f, g = step.potentials()
    return f, g, n_iter


def _evaluate(problem: _Problem, f: Tensor, g: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Plan, relaxed objective, <T, C> and marginal residual at potentials (f, g).

    With T = a b^T exp((f + g - C) / eps), eps * sum T log(T / (a b^T)) = <T 1, f> + <T^T 1, g>
    - <T, C>, so the objective needs no logarithm of the (possibly tiny) plan entries.
    """
    cost, a, b, eps, rho = problem.cost, problem.a, problem.b, problem.eps, problem.rho
    log_plan = (f / eps + problem.log_a).unsqueeze(2) + (g / eps + problem.log_b).unsqueeze(1)
    plan = _exp_flushed(torch.add(log_plan, cost, alpha=-1.0 / eps))
    row, col = plan.sum(2), plan.sum(1)
    mass = row.sum(1)
    mass_a, mass_b = a.sum(1), b.sum(1)
    transport_cost = (plan * cost).sum((1, 2))
    value = (row * f).sum(1) + (col * g).sum(1) + eps * (mass_a * mass_b - mass)
    if math.isinf(rho):
        row_target, col_target = a, b
    else:
        value = value + rho * (_generalised_kl(row, a) + _generalised_kl(col, b))
        row_target = torch.exp(problem.log_a - f / rho)
        col_target = torch.exp(problem.log_b - g / rho)
    marginal_error = ((row - row_target).abs().sum(1) + (col - col_target).abs().sum(1)) / mass_a
    return plan, value, transport_cost, marginal_error


def _generalised_kl(p: Tensor, q: Tensor) -> Tensor:
    """KL(p | q) = sum p log(p / q) - p + q over the last axis (0 log 0 = 0)."""
    return (torch.special.xlogy(p, p / q) - p + q).sum(-1)
