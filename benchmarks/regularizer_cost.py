"""Time of the IID objective alone on the Handwritten batch, to compare two checkouts of iidfusion.

``python benchmarks/regularizer_cost.py [--repeats N] [--label TEXT]`` prints one JSON line: per
method, the fastest of N interleaved runs (process CPU time, one thread, ms) of the objective's
forward and backward on a fixed model output, and the cost of L_ic + L_dc, of L_dc alone and of
L_ic alone (IID objective minus its base's, with and without each regularizer). It uses only API
that existed before the speed-ups (docs/evidence.md, section 3), so the same file measures an older commit:

    git worktree add /tmp/before a68f04d
    for i in 1 2 3; do
        PYTHONPATH=/tmp/before/src python benchmarks/regularizer_cost.py --label before
        python benchmarks/regularizer_cost.py --label after
    done

Alternating the two runs exposes both to the same load of a shared machine (docs/evidence.md, 3).
"""

import argparse
import dataclasses
import json
import time

import torch

from iidfusion.fusion.methods import get_method
from iidfusion.tasks.classification.config import LossConfig
from iidfusion_studies.train_cost import CostConfig, Trainer, _leaf, handwritten_workload

FAMILIES = {"static": ("if-static", "iid-l"), "pdf": ("if-pdf", "iid-p")}


def objective(trainer: Trainer):
    """The objective's forward and backward on a fixed, detached model output, as a function
    (``train_cost.objective_timer`` of the current code, restated with what older code has).
    """
    with torch.no_grad():
        output = trainer.model(trainer.batch["inputs"])
    leaves = {f.name: _leaf(getattr(output, f.name)) for f in dataclasses.fields(output)}
    output = dataclasses.replace(output, **leaves)
    batch = trainer.batch
    return lambda: trainer.loss(
        output, batch["label"], batch["index"], strategy=trainer.model.strategy
    ).total.backward()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=30, help="interleaved runs per method (default 30)")
    parser.add_argument("--label", default="", help="a label copied into the output")
    args = parser.parse_args()
    torch.set_num_threads(1)
    workload = handwritten_workload(CostConfig())
    methods = [m for base, iid in FAMILIES.values() for m in (base, iid, f"{iid}-no-ic", f"{iid}-no-dc")]
    timers = {}
    for method in methods:
        torch.manual_seed(0)
        timers[method] = objective(Trainer(workload, get_method(method), LossConfig(), torch.device("cpu")))
    times: dict[str, list[float]] = {m: [] for m in methods}
    for timer in timers.values():
        timer()  # warm-up
    for _ in range(args.repeats):
        for method, timer in timers.items():
            start = time.process_time()
            timer()
            times[method].append(time.process_time() - start)
    fastest = {m: 1e3 * min(t) for m, t in times.items()}
    report: dict[str, object] = {"label": args.label, "objective_ms": {m: round(v, 2) for m, v in fastest.items()}}
    for family, (base, iid) in FAMILIES.items():
        report[family] = {
            "L_ic + L_dc (ms)": round(fastest[iid] - fastest[base], 2),
            "L_dc (ms)": round(fastest[f"{iid}-no-ic"] - fastest[base], 2),
            "L_ic (ms)": round(fastest[f"{iid}-no-dc"] - fastest[base], 2),
        }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
