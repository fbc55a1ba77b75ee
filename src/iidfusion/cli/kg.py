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

from iidfusion.cli.fit import add_checkpoint_resume_argument, add_overwrite_argument, interruption
from iidfusion.cli.options import CONFIG_HELP, add_option_arguments, overrides_from_args

# Options set in the YAML file only: mappings, and the feature sources (--features has its own syntax).
_FILE_ONLY = frozenset({"features", "model.modality_weights", "model.strategy_kwargs", "model.options"})
# `kg compare` trains each seed 0..N-1 with the IID weights of its `compare` section (--alpha, --beta).
_COMPARE_SETS = frozenset({"seed", "objective.iid.alpha", "objective.iid.beta"})


def _common(parser: argparse.ArgumentParser, exclude: frozenset[str]) -> None:
    """The flags of both KG commands: one per option of the experiment (as ``fit``'s, from the
    configuration's own help and rules), and the data, output and cache flags.
    """
    parser.add_argument("--config", metavar="FILE_OR_NAME", help=CONFIG_HELP)
    add_option_arguments(parser, "kg", _FILE_ONLY | exclude)
    parser.add_argument(
        "--features",
        nargs="+",
        metavar="NAME=SOURCE",
        help="feature modalities: NAME=FILE.npy|FILE.pkl|FILE.txt, NAME=FILE.npy@ORDER (rows named by ORDER, e.g. "
        "entity2id.txt), NAME=minilm (the entity names) or NAME=minilm:TEXTS.tsv (a text per entity); default: "
        "the graph folder's text_features.npy and descriptions.tsv when present, else the entity names",
    )
    parser.add_argument("--cache-dir", help="cache of entity-name embeddings (default: ~/.cache/iidfusion)")
    parser.add_argument("--out", required=True, help="output folder (a new one, or one to --overwrite)")
    add_overwrite_argument(parser)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("kg", help="multimodal knowledge-graph link prediction (OTKGE or MMKRL, + IID)")
    commands = parser.add_subparsers(dest="kg_command", required=True, metavar="KG_COMMAND")
    fit = commands.add_parser("fit", help="train one model; writes config.yaml, metrics.json, model.ckpt")
    _common(fit, frozenset())
    add_checkpoint_resume_argument(fit, "OUT/checkpoints/last.ckpt")
    fit.set_defaults(handler=run_fit)
    compare = commands.add_parser("compare", help="baseline vs IID over seeds; writes results.{csv,json,md}")
    _common(compare, _COMPARE_SETS)
    add_option_arguments(compare, "kg-compare")
    compare.set_defaults(handler=run_compare)


def _experiment(args: argparse.Namespace) -> tuple[Any, Any]:
    """The configuration after the flags, and the ``compare`` section (both from one read of the
    YAML; the flags merged by the same loader).
    """
    from iidfusion.core.config import merge_config, nest
    from iidfusion.kg.features import parse_feature_specs
    from iidfusion.tasks.kg.config import load_kg_config

    config, compare = load_kg_config(args.config)
    overrides = overrides_from_args(args, "kg")
    if args.features:
        overrides["features"] = parse_feature_specs(args.features)
    config = merge_config(config, nest(overrides), "the command line")
    if args.kg_command == "compare":
        flags = overrides_from_args(args, "kg-compare")
        compare = merge_config(
            compare, {k.removeprefix("compare."): v for k, v in flags.items()}, "the command line", "compare."
        )
    return config, compare


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
    one keeps its folder when ``last`` (its last checkpoint) was written, saying how to resume.
    """
    from iidfusion.cli.main import CommandError
    from iidfusion.engine.outputs import check_output_folder, run_folder
    from iidfusion.ot import EpsTooSmallError

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
        raise CommandError(f"{error} (try a smaller --alpha, --beta or --lr)") from error


def run_fit(args: argparse.Namespace) -> int:
    from pathlib import Path

    from iidfusion.core.progress import write_line
    from iidfusion.tasks.kg.fit import fit_kg, save_run, validate_kg_config

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

    from iidfusion.core.config import check_rules
    from iidfusion.core.progress import write_line
    from iidfusion.kg.models import get_kg_model_class
    from iidfusion.tasks.kg.compare import arm_config, run_comparison, write_comparison
    from iidfusion.tasks.kg.fit import validate_kg_config

    config, compare = _experiment(args)
    check_rules(compare, "compare.")
    seeds = list(range(compare.seeds))
    # The IID arm with the last seed: the baseline differs only in alpha = beta = 0, always valid.
    validate_kg_config(arm_config(config, alpha=compare.alpha, beta=compare.beta, seed=seeds[-1]))
    with _run_in(args):
        kg, features, config = _load(config, args)
        results = run_comparison(
            kg,
            features,
            config,
            alpha=compare.alpha,
            beta=compare.beta,
            seeds=seeds,
            log=write_line,
            progress=config.train.progress_bar,
            out=args.out,
        )
        title = get_kg_model_class(config.model.name).title
        if getattr(rank_zero_only, "rank", 0) != 0:  # another process of a data-parallel run: rank 0 writes
            return 0
        report = write_comparison(args.out, results, config, f"{kg.name}: {title} baseline vs IID")
    print(report)
    return 0
