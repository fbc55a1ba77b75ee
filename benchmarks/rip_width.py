"""How much the RIP projection distorts at small widths (docs/method.md, "Distribution coherence").

    python benchmarks/rip_width.py      # -> results/rip_width.{md,json}

At the default feature width d = 64 the RIP bound rip_dimension(64, 16) = 178 asks for more rows
than the feature has, and the default d2 caps it at d / 2 = 32 (:func:`iidfusion.ot.default_rip_width`).
This measures what that projection costs against the exact low-passed features (Phi = I): the
relative error of the distances between the points of two clouds, and the L_dc value W~, over
five seeds of Phi, for d1 in {4, 8, 16} and d2 in {16, 32, 48}, on Gaussian features and on a
random ReLU layer of two Handwritten views (standardised, width 64).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch

from iidfusion.data import load_dataset
from iidfusion.engine.outputs import write_text_atomic
from iidfusion.losses import DistributionCoherence
from iidfusion.ot import FourierRIPReducer, default_rip_width, rip_dimension

REPO = Path(__file__).resolve().parents[1]
WIDTH, SEEDS = 64, 5


def clouds() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    views = list(load_dataset("handwritten", seed=0).train.views.values())
    layers = [
        torch.relu(v[:256].float() @ (torch.randn(v.shape[1], WIDTH, generator=generator) / math.sqrt(v.shape[1])))
        for v in views
    ]
    standardised = [(h - h.mean(0)) / h.std(0).clamp_min(1e-6) for h in layers]
    gaussian = (torch.randn(256, WIDTH, generator=generator), torch.randn(256, WIDTH, generator=generator) + 0.5)
    return {"gaussian": gaussian, "handwritten": (standardised[0], standardised[2])}


def exact(d1: int) -> FourierRIPReducer:
    """The low-passed features themselves: the reducer with Phi = I."""
    reducer = FourierRIPReducer(WIDTH, d1)
    reducer.load_state_dict({"phi": torch.eye(WIDTH)})
    return reducer


def measure() -> list[dict]:
    rows = []
    for name, (a, b) in clouds().items():
        for d1 in (4, 8, 16):
            low = exact(d1)
            true_distances = torch.cdist(low(a), low(b)).clamp_min(1e-9)
            reference = DistributionCoherence(WIDTH, d1)
            reference.reducer.load_state_dict({"phi": torch.eye(WIDTH)})
            exact_value = reference({"a": a, "b": b}).loss.item()
            for d2 in (16, 32, 48):
                errors, values = [], []
                for seed in range(SEEDS):
                    reducer = FourierRIPReducer(WIDTH, d1, d2, seed=seed)
                    errors.append((torch.cdist(reducer(a), reducer(b)) / true_distances - 1).abs())
                    values.append(DistributionCoherence(WIDTH, d1, d2, seed=seed)({"a": a, "b": b}).loss.item())
                error = torch.stack(errors)
                value = torch.tensor(values)
                rows.append(
                    {
                        "features": name,
                        "d1": d1,
                        "d2": d2,
                        "rip_dimension": rip_dimension(WIDTH, d1),
                        "default": d2 == default_rip_width(WIDTH, d1),
                        "median_error": error.median().item(),
                        "q95_error": error.flatten().quantile(0.95).item(),
                        "value": value.mean().item(),
                        "value_std": value.std().item(),
                        "exact_value": exact_value,
                    }
                )
    return rows


def report(rows: list[dict]) -> str:
    lines = [
        "# RIP projection at width 64",
        "",
        "`python benchmarks/rip_width.py`. Relative error of the distances between the points of two clouds of 256 "
        "(reduced by Phi against the exact low-passed features, Phi = I), median and 95th percentile over pairs and "
        f"{SEEDS} seeds of Phi; W~ (L_dc of the pair) mean ± std over the seeds, and with Phi = I. Default: the "
        "default d2 of that d1 (rip_dimension capped at d / 2).",
        "",
        "| features | d1 | d2 | rip_dimension | default | median error | 95th pct error | W~ | W~ with Phi = I |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['features']} | {r['d1']} | {r['d2']} | {r['rip_dimension']} | {'yes' if r['default'] else ''} | "
            f"{r['median_error']:.3f} | {r['q95_error']:.3f} | {r['value']:.3f} ± {r['value_std']:.3f} | "
            f"{r['exact_value']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = measure()
    text = report(rows)
    print(text)
    write_text_atomic(args.out / "rip_width.json", json.dumps(rows, indent=1) + "\n")
    write_text_atomic(args.out / "rip_width.md", text)


if __name__ == "__main__":
    main()
