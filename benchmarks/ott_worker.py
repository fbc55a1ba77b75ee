"""OTT-JAX's unbalanced Sinkhorn on bench_ot.py's problems, timed in a process of its own.

bench_ot.py (``--ott-python PYTHON``) starts this script under a Python that has ``ott-jax``
(JAX does not share an environment with our pinned torch: a virtual environment of its own,
``python -m venv .ott && .ott/bin/pip install ott-jax``), and drives it over stdin / stdout,
one JSON object per line, so that OTT runs in the same rounds as the other methods:

* ``{"op": "load", "path": NPZ, "eps": e, "rho": r}``: the clouds ``x`` and ``y`` (P, n, d2) of
  one problem, float32;
* ``{"op": "run", "threshold": t, "out": NPZ or null}``: value and gradient of the sum of the P
  values with respect to both clouds (``jax.value_and_grad`` of the vmapped solve, jitted once
  per threshold; OTT's default implicit differentiation), answered with the run's CPU and wall
  seconds in this process; with ``out``, the values (P,) and the gradient (x's, then y's,
  flattened) are written there;
* ``{"op": "mass", "threshold": t}``: the total mass of each pair's plan (``out.matrix``).

OTT's parameters: ``PointCloud(x, y, cost_fn=Euclidean(), epsilon=eps)`` and
``LinearProblem(geom, tau_a=tau, tau_b=tau)`` with tau = rho / (rho + eps), which its
documentation gives as a marginal penalty rho KL; the value is ``reg_ot_cost``. XLA runs on one
thread, as the other methods do.
"""

from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import jax
import jax.numpy as jnp
import numpy as np
from ott.geometry import costs, pointcloud
from ott.problems.linear import linear_problem
from ott.solvers.linear import sinkhorn

MAX_ITERATIONS = 2000


def solve(x, y, eps: float, rho: float, threshold: float):
    """OTT's solution of one pair's problem."""
    tau = rho / (rho + eps)
    geom = pointcloud.PointCloud(x, y, cost_fn=costs.Euclidean(), epsilon=eps)
    problem = linear_problem.LinearProblem(geom, tau_a=tau, tau_b=tau)
    return sinkhorn.Sinkhorn(threshold=threshold, max_iterations=MAX_ITERATIONS)(problem)


def solver(eps: float, rho: float, threshold: float):
    """The jitted value and gradient of the summed values of a (P, n, d2) batch of problems."""

    def total(x, y):
        values = jax.vmap(lambda a, b: solve(a, b, eps, rho, threshold).reg_ot_cost)(x, y)
        return values.sum(), values

    return jax.jit(jax.value_and_grad(total, argnums=(0, 1), has_aux=True))


def main() -> int:
    x = y = None
    eps = rho = 0.0
    compiled: dict[float, object] = {}
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "load":
            arrays = np.load(request["path"])
            x, y = jnp.asarray(arrays["x"]), jnp.asarray(arrays["y"])
            eps, rho = float(request["eps"]), float(request["rho"])
            compiled.clear()
            answer: dict[str, object] = {"ok": True, "ott": __import__("ott").__version__, "jax": jax.__version__}
        elif request["op"] == "mass":
            threshold = float(request["threshold"])
            masses = [float(solve(a, b, eps, rho, threshold).matrix.sum()) for a, b in zip(x, y, strict=True)]
            answer = {"mass": masses}
        else:
            threshold = float(request["threshold"])
            step = compiled.setdefault(threshold, solver(eps, rho, threshold))
            start_cpu, start_wall = time.process_time(), time.perf_counter()
            (_, values), grads = step(x, y)
            jax.block_until_ready(grads)
            answer = {"cpu": time.process_time() - start_cpu, "wall": time.perf_counter() - start_wall}
            if request.get("out"):
                flat = np.concatenate([np.asarray(g, dtype=np.float64).ravel() for g in grads])
                np.savez(request["out"], values=np.asarray(values, dtype=np.float64), grad=flat)
        print(json.dumps(answer), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
