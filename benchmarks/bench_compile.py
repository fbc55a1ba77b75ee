"""Does ``torch.compile`` pay for L_dc? ``python benchmarks/bench_compile.py [--modalities M] [--batch n]``.

Times one forward + backward of :class:`iidfusion.losses.DistributionCoherence` on M random
feature clouds of n samples and width d, eager against ``torch.compile`` (default inductor
backend), in CPU time of this process with one thread; reports the first compiled call (the
compilation) and the number of training steps after which the compiled path would have paid
for it. The Sinkhorn solver's convergence checks read the host, so the compiled graph breaks
there: what inductor fuses is the cost, the reduction and the iteration blocks between checks.
Prints a markdown table (``--output`` also writes it).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from iidfusion.losses.coherence import DistributionCoherence


def _per_step_ms(step, repeats: int) -> float:
    for _ in range(5):
        step()
    started = time.process_time()
    for _ in range(repeats):
        step()
    return (time.process_time() - started) / repeats * 1e3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modalities", type=int, default=3, help="M (default 3)")
    parser.add_argument("--batch", type=int, default=64, help="n samples per cloud (default 64)")
    parser.add_argument("--dim", type=int, default=64, help="feature width d (default 64)")
    parser.add_argument("--repeats", type=int, default=None, help="timed steps (default 50, quick 10)")
    parser.add_argument("--quick", action="store_true", help="10 timed steps (the compilation is the same)")
    parser.add_argument("--output", type=Path, default=None, help="also write the table here")
    args = parser.parse_args(argv)
    repeats = args.repeats or (10 if args.quick else 50)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    features = {f"m{i}": torch.randn(args.batch, args.dim, requires_grad=True) for i in range(args.modalities)}
    loss = DistributionCoherence(args.dim)
    compiled = torch.compile(loss)

    def step(module) -> None:
        module(features).loss.backward()

    eager_ms = _per_step_ms(lambda: step(loss), repeats)
    started = time.perf_counter()
    step(compiled)
    compile_s = time.perf_counter() - started
    compiled_ms = _per_step_ms(lambda: step(compiled), repeats)
    saved_ms = eager_ms - compiled_ms
    break_even = f"{compile_s * 1e3 / saved_ms:,.0f}" if saved_ms > 0 else "never"
    report = (
        "\n".join(
            [
                f"L_dc forward + backward, M = {args.modalities}, n = {args.batch}, d = {args.dim}, one thread, CPU "
                "time:",
                "",
                "| eager ms/step | compiled ms/step | compiled / eager | first compiled call (s, wall) | steps to "
                "break even |",
                "|---:|---:|---:|---:|---:|",
                f"| {eager_ms:.2f} | {compiled_ms:.2f} | {compiled_ms / eager_ms:.2f} | {compile_s:.1f} | {break_even} "
                "|",
            ]
        )
        + "\n"
    )
    print(report, end="")
    if args.output is not None:
        args.output.write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
