"""``iidfusion kg``: multimodal knowledge-graph link prediction (OTKGE or MMKRL, + IID).

    iidfusion kg fit --config configs/kg/umls.yaml --alpha 0.1 --beta 0.1 --seed 0 --out runs/kg
    iidfusion kg compare --config configs/kg/umls.yaml --seeds 3 --out runs/kg-compare
    iidfusion kg compare --config configs/kg/umls_mmkrl.yaml --model mmkrl --out runs/kg-mmkrl

Values come from the dataclass defaults, then ``--config`` (YAML), then the flags, merged by the
loader every command uses (:func:`iidfusion.core.config.merge_config`).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from iidfusion.cli.fit import add_overwrite_argument, interruption

def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML experiment file, e.g. configs/kg/umls.yaml (default: built-in defaults)")
    parser.add_argument("--data", help="umls (bundled with pykeen), wn9img, fbimg, or a folder with train/valid/test")
    parser.add_argument(
        "--features", nargs="+", metavar="NAME=SOURCE",
        help="feature modalities: NAME=FILE.npy|FILE.pkl|FILE.txt, NAME=FILE.npy@ORDER (rows named by ORDER, e.g. "
        "entity2id.txt), NAME=minilm (the entity names) or NAME=minilm:TEXTS.tsv (a text per entity); default: "
        "the graph folder's text_features.npy and descriptions.tsv when present, else the entity names",
    )  # fmt: skip
    parser.add_argument("--model", help="KG model: otkge (default) or mmkrl (model.name; iidfusion.kg.registry)")
    parser.add_argument("--vocabulary", choices=("train", "all"), help="entity ids from the training split only, or all")
    parser.add_argument("--alpha", type=float, help="weight of L_ic (0: off)")
    parser.add_argument("--beta", type=float, help="weight of L_dc (0: off)")
    parser.add_argument("--max-epochs", type=int, help="training epochs")
    parser.add_argument("--rank", type=int, help="ComplEx rank k (2k reals per embedding)")
    parser.add_argument("--batch-size", type=int, help="training batch size")
    parser.add_argument("--eval-every", type=int, help="validate every N epochs")
    parser.add_argument("--fusion-strategy", help="registered fusion strategy of the query weights: qmf, pdf, static "
                        "(model.strategy; default: OTKGE's static weights)")
    parser.add_argument("--tie-policy", choices=("pessimistic", "realistic", "optimistic"), help="rank of tied scores")
    parser.add_argument("--accelerator", help="Lightning accelerator: auto, cpu, gpu, ... (train.accelerator; default: auto)")
    parser.add_argument("--devices", help="Lightning devices: auto, a count, or a comma list of ids (train.devices; default: auto)")
    parser.add_argument("--num-nodes", type=int, help="machines the run spans, each with --devices processes (default: 1)")
    parser.add_argument("--strategy", help="Lightning strategy: auto, ddp, ddp_spawn, ... (train.strategy, as in `fit`; default: auto)")
    parser.add_argument("--device", help="earlier form of --accelerator/--devices: cpu, cuda, cuda:N or auto (one device)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (train.num_threads; 0: torch's default)")
    parser.add_argument("--checkpoints", action=argparse.BooleanOptionalAction, default=None,
                        help="save best and last checkpoints under OUT/checkpoints (default: save)")
    parser.add_argument("--loggers", help="loggers writing under OUT: csv, tensorboard, a comma list, or none (default: both)")
    parser.add_argument("--cache-dir", help="cache of entity-name embeddings (default: ~/.cache/iidfusion)")
    parser.add_argument("--out", required=True, help="output folder (a new one, or one to --overwrite)")
    parser.add_argument("--progress-bar", action=argparse.BooleanOptionalAction, default=None,
                        help="a progress bar on stderr (default: shown)")
    add_overwrite_argument(parser)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("kg", help="multimodal knowledge-graph link prediction (OTKGE or MMKRL, + IID)")
    commands = parser.add_subparsers(dest="kg_command", required=True, metavar="KG_COMMAND")
    fit = commands.add_parser("fit", help="train one model; writes config.yaml, metrics.json, model.ckpt")
    _common(fit)
    fit.add_argument("--seed", type=int, help="seed of initialisation and batch order")
    fit.add_argument(
        "--resume", metavar="CKPT",
        help="continue an interrupted run from a checkpoint; 'last' = OUT/checkpoints/last.ckpt; only with the run's "
        "settings and data (default: none)",
    )  # fmt: skip
    fit.set_defaults(handler=run_fit)
    compare = commands.add_parser("compare", help="baseline vs IID over seeds; writes results.{csv,json,md}")
    _common(compare)
    compare.add_argument("--seeds", type=int, help="seeds 0..N-1 (default: the config's compare.seeds, else 3)")
    compare.set_defaults(handler=run_compare)


def _replace(section: Any, **changes: Any) -> Any:
    return dataclasses.replace(section, **{k: v for k, v in changes.items() if v is not None})


def _experiment(args: argparse.Namespace) -> tuple[Any, Any]:
    """The configuration after the flags, and the ``compare`` section (both from one read of the YAML)."""
    from iidfusion.kg.features import parse_feature_specs
    from iidfusion.training.kg_compare import load_kg_config

    config, compare = load_kg_config(args.config)
    features = parse_feature_specs(args.features) if args.features else None
    config = _replace(config, data=args.data, vocabulary=args.vocabulary, features=features, seed=getattr(args, "seed", None))
    iid = _replace(config.objective.iid, alpha=args.alpha, beta=args.beta)
    _check_strategy_flag(args.strategy)
    model = _replace(config.model, name=args.model, rank=args.rank, strategy=args.fusion_strategy)
    placement = {"accelerator": args.accelerator, "devices": args.devices}
    if args.device is not None:
        from iidfusion.training.kg_fit import legacy_device

        if args.accelerator is not None or args.devices is not None:
            raise ValueError("--device is the earlier form of --accelerator and --devices: give one or the other")
        placement = legacy_device(args.device, "the command line")
    loggers = None if args.loggers is None else tuple(n.strip() for n in args.loggers.split(",") if n.strip() not in ("", "none"))
    train = _replace(
        config.train, max_epochs=args.max_epochs, batch_size=args.batch_size, eval_every=args.eval_every,
        tie_policy=args.tie_policy, num_nodes=args.num_nodes, strategy=args.strategy, num_threads=args.threads,
        checkpoints=args.checkpoints, loggers=loggers, progress_bar=args.progress_bar, **placement,
    )  # fmt: skip
    config = dataclasses.replace(config, model=model, objective=dataclasses.replace(config.objective, iid=iid), train=train)
    compare = _replace(compare, alpha=args.alpha, beta=args.beta, seeds=getattr(args, "seeds", None))
    return config, compare


def _check_strategy_flag(value: str | None) -> None:
    """``--strategy`` is Lightning's in every command; it named the fusion strategy in ``kg`` before."""
    from iidfusion.fusion import available_strategies

    if value in available_strategies():
        raise ValueError(f"--strategy is Lightning's strategy (train.strategy), as in `fit`; the fusion strategy "
                         f"of the query weights is --fusion-strategy {value}")


def _load(config: Any, args: argparse.Namespace) -> tuple[Any, dict[str, Any], Any]:
    """The graph, its modality features and ``config`` with the feature sources it used."""
    from iidfusion.kg.data import load_triples_folder, resolve_kg_path
    from iidfusion.kg.features import build_modality_features, default_feature_sources

    name, folder = resolve_kg_path(config.data)
    kg = load_triples_folder(folder, name=name, vocabulary=config.vocabulary)
    config = dataclasses.replace(config, features=config.features or default_feature_sources(folder))
    print(kg.summary())
    print("modalities: structure, " + ", ".join(f"{m} ({source})" for m, source in config.features.items()))
    return kg, build_modality_features(kg, config.features, cache_dir=args.cache_dir, base_dir=folder), config


@contextmanager
def _run_in(args: argparse.Namespace, *, resume: bool | None = None, last: Any = None) -> Iterator[None]:
    """The output folder of a kg run: checked first, removed if the run fails, replaced as a
    whole with --overwrite; an eps too small for the OT costs names the config keys.

    ``kg fit`` (``resume`` not None) may continue a run in it (``--resume``), and an interrupted
    one keeps its folder when ``last`` (its last checkpoint) was written, saying how to resume."""
    from iidfusion.cli.main import CommandError
    from iidfusion.ot import EpsTooSmallError
    from iidfusion.training.outputs import check_output_folder, run_folder

    check_output_folder(args.out, overwrite=args.overwrite, resume=resume)
    resumable = None if last is None else (lambda folder: last.is_file())
    try:
        with run_folder(args.out, overwrite=args.overwrite, resumable=resumable):
            yield
    except KeyboardInterrupt:
        if last is None:
            raise
        raise interruption(args.out, last, overwrite=args.overwrite) from None
    except EpsTooSmallError as error:
        raise CommandError(f"objective.iid.eps or model.projection.eps: {error}") from error
    except FloatingPointError as error:
        raise CommandError(f"{error} (try a smaller --alpha, --beta or train.learning_rate)") from error


def run_fit(args: argparse.Namespace) -> int:
    from pathlib import Path

    from iidfusion.progress import write_line
    from iidfusion.training.kg_fit import fit_kg, save_run, validate_kg_config

    config, _ = _experiment(args)
    validate_kg_config(config)
    if args.resume is not None and args.overwrite:
        raise ValueError("--resume continues the run in the output folder and --overwrite replaces it: give one")
    last = Path(args.out) / "checkpoints" / "last.ckpt"
    resume = last if args.resume == "last" else args.resume
    with _run_in(args, resume=resume is not None, last=last):
        kg, features, config = _load(config, args)
        result = fit_kg(kg, features, config, log=write_line, run_dir=args.out, resume=resume)
        if result.is_global_zero:
            save_run(result, config, args.out, kg)
    if not result.is_global_zero:
        return 0
    metrics = " ".join(f"{k} {v:.4f}" for k, v in result.test.as_dict().items())
    print(f"best epoch {result.best_epoch}; test ({result.test.tie_policy} ties): {metrics}; wrote {args.out}")
    return 0


def run_compare(args: argparse.Namespace) -> int:
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    from iidfusion.progress import write_line
    from iidfusion.training.kg_compare import run_comparison, write_comparison
    from iidfusion.training.kg_fit import validate_kg_config

    config, compare = _experiment(args)
    if compare.seeds < 1:
        raise ValueError(f"--seeds must be >= 1 (seeds 0..N-1), got {compare.seeds}")
    seeds = list(range(compare.seeds))
    for seed in seeds:
        validate_kg_config(dataclasses.replace(config, seed=seed))
    iid = dataclasses.replace(config.objective.iid, alpha=compare.alpha, beta=compare.beta)
    validate_kg_config(dataclasses.replace(config, objective=dataclasses.replace(config.objective, iid=iid)))
    with _run_in(args):
        kg, features, config = _load(config, args)
        results = run_comparison(kg, features, config, alpha=compare.alpha, beta=compare.beta, seeds=seeds,
                                 log=write_line, progress=config.train.progress_bar, out=args.out)
        from iidfusion.kg.registry import get_kg_model_class

        title = get_kg_model_class(config.model.name).title
        if rank_zero_only.rank != 0:  # another process of a data-parallel run: rank 0 writes
            return 0
        report = write_comparison(args.out, results, config, f"{kg.name}: {title} baseline vs IID")
    print(report)
    return 0
