"""The scale of trained KG embeddings, which sets the KG's ``kl_scale`` (docs/method.md, "Knowledge-graph models").

    python benchmarks/kg_embedding_scale.py      # -> results/kg_embedding_scale.{md,json}

L_ic's KL terms compare the batch Gaussian of the features with N(0, r^2 I). Classification
features are standardised (r = 1, the paper's N(0, I)); ComplEx embeddings live at the scale N3
regularisation sets. This trains the OTKGE-style baseline (alpha = beta = 0) of
``configs/kg/umls.yaml`` and reports the per-dimension standard deviation of every modality's
entity table, and the KL of its Gaussian to N(0, I) and to N(0, r^2 I) for the chosen r.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
from pathlib import Path

from iidfusion.engine.outputs import write_text_atomic
from iidfusion.kg.data import load_kg, resolve_kg_path
from iidfusion.kg.features import build_modality_features, default_feature_sources
from iidfusion.kg.objective import IIDTermsConfig
from iidfusion.losses.informatic import gaussian_kl_to_standard
from iidfusion.tasks.kg.config import load_kg_config
from iidfusion.tasks.kg.fit import fit_kg

REPO = Path(__file__).resolve().parents[1]


def measure(config_path: Path, seeds: int) -> dict:
    config, _ = load_kg_config(config_path)
    config = dataclasses.replace(config, train=dataclasses.replace(config.train, progress_bar=False))
    _, folder = resolve_kg_path(config.data)
    kg = load_kg(config.data, vocabulary=config.vocabulary)
    features = build_modality_features(kg, config.features or default_feature_sources(folder), base_dir=folder)
    scale = IIDTermsConfig().kl_scale
    runs = []
    for seed in range(seeds):
        result = fit_kg(kg, features, dataclasses.replace(config, seed=seed))
        tables = {name: table.detach().double() for name, table in result.model.entity_tables().items()}
        runs.append(
            {
                "seed": seed,
                "epochs": result.best_epoch,
                "median_std": {n: t.std(0).median().item() for n, t in tables.items()},
                "kl_to_standard": {n: gaussian_kl_to_standard(t).item() for n, t in tables.items()},
                "kl_to_scaled": {n: gaussian_kl_to_standard(t, scale=scale).item() for n, t in tables.items()},
            }
        )
    return {"config": str(config_path.relative_to(REPO)), "data": config.data, "kl_scale": scale, "runs": runs}


def report(result: dict) -> str:
    r = result["kl_scale"]
    lines = [
        "# Scale of trained KG embeddings",
        "",
        f"`python benchmarks/kg_embedding_scale.py`: the baseline of `{result['config']}` ({result['data']}), "
        "trained as configured; per modality's entity table: the median over dimensions of the per-dimension std, "
        f"and the Gaussian KL (mean over dimensions) to N(0, I) and to N(0, r^2 I) with the KG default r = {r:g} "
        "(`objective.iid.kl_scale`).",
        "",
        "| seed | best epoch | modality | median std | KL to N(0, I) | KL to N(0, r^2 I) |",
        "|---:|---:|---|---:|---:|---:|",
    ]
    for run in result["runs"]:
        for name, std in run["median_std"].items():
            lines.append(
                f"| {run['seed']} | {run['epochs']} | {name} | {std:.3f} | {run['kl_to_standard'][name]:.3f} | "
                f"{run['kl_to_scaled'][name]:.3f} |"
            )
    stds = [s for run in result["runs"] for s in run["median_std"].values()]
    lines += ["", f"Median std over seeds and modalities: {statistics.median(stds):.3f}.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "kg" / "umls.yaml")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    result = measure(args.config.resolve(), args.seeds)
    text = report(result)
    print(text)
    write_text_atomic(args.out / "kg_embedding_scale.json", json.dumps(result, indent=2) + "\n")
    write_text_atomic(args.out / "kg_embedding_scale.md", text)


if __name__ == "__main__":
    main()
