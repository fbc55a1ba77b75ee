import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from iidfusion.cli.main import main
from iidfusion.engine.outputs import MARKER
from iidfusion.engine.stats import t_interval

REPO = Path(__file__).resolve().parents[2]


def write_features(kg_folder: Path, tmp_path: Path) -> tuple[Path, Path]:
    """An .npy matrix (sorted entity order) and a pickled dict, the two OTKGE-style formats."""
    from iidfusion.kg.data import load_triples_folder

    entities = load_triples_folder(kg_folder).entities
    rng = np.random.default_rng(0)
    np.save(tmp_path / "img.npy", rng.normal(size=(len(entities), 6)))
    (tmp_path / "ling.pkl").write_bytes(pickle.dumps({e: rng.normal(size=4) for e in entities}))
    return tmp_path / "img.npy", tmp_path / "ling.pkl"


def small_config(tmp_path: Path) -> Path:
    path = tmp_path / "small.yaml"
    config = {
        "model": {
            "rank": 4,
            "init_scale": 0.1,
            "modality_weights": {"img": 0.1, "ling": 0.3},
            "projection": {"cost_scale": 1.0, "plan_entities": 2, "refresh_every": 4},
        },
        "objective": {"n3_weight": 1e-3, "iid": {"d1": 4, "d2": 8, "coherence_points": 16}},
        "train": {"batch_size": 32, "learning_rate": 0.3, "eval_every": 2, "num_threads": 1},
        "compare": {"seeds": 2, "alpha": 0.1, "beta": 0.1},
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def test_fit_on_fixture_files(tiny_kg_folder, tmp_path, capsys):
    img, ling = write_features(tiny_kg_folder, tmp_path)
    out = tmp_path / "run"
    code = main(
        [
            "kg",
            "fit",
            "--config",
            str(small_config(tmp_path)),
            "--data",
            str(tiny_kg_folder),
            "--features",
            f"img={img}",
            f"ling={ling}",
            "--alpha",
            "0.1",
            "--beta",
            "0.1",
            "--seed",
            "1",
            "--max-epochs",
            "2",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    captured = capsys.readouterr()
    assert "test (pessimistic ties): mrr" in captured.out
    assert "kg seed 1" in captured.err and "valid MRR" in captured.err and "valid MRR" not in captured.out
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["test"]) == {"mrr", "hits@1", "hits@3", "hits@10"}
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["seed"] == 1 and saved["objective"]["iid"]["alpha"] == 0.1 and saved["features"]["img"] == str(img)
    assert metrics["provenance"]["device"] == "cpu" and metrics["config"]["seed"] == 1


def test_a_kg_checkpoint_gives_back_the_tested_model(tiny_kg_folder, tmp_path, capsys):
    """model.ckpt holds weights, features and config: the loaded model scores the test MRR of metrics.json."""
    import iidfusion
    from iidfusion.kg.data import load_triples_folder
    from iidfusion.kg.evaluate import evaluate_link_prediction

    img, ling = write_features(tiny_kg_folder, tmp_path)
    out = tmp_path / "run"
    assert (
        main(
            [
                "kg",
                "fit",
                "--config",
                str(small_config(tmp_path)),
                "--data",
                str(tiny_kg_folder),
                "--features",
                f"img={img}",
                f"ling={ling}",
                "--alpha",
                "0.1",
                "--max-epochs",
                "2",
                "--out",
                str(out),
                "--no-progress-bar",
            ]
        )
        == 0
    )
    assert "kg seed" not in capsys.readouterr().err  # --no-progress-bar
    trained = iidfusion.load_model(out / "model.ckpt")
    assert (
        trained.method == "kg" and trained.inputs == {"img": 6, "ling": 4} and trained.config.objective.iid.alpha == 0.1
    )
    kg = load_triples_folder(tiny_kg_folder)
    assert trained.output_names == kg.entities
    test = evaluate_link_prediction(trained.model.scorer(), kg, "test", tie_policy=trained.config.train.tie_policy)
    assert test.mrr == pytest.approx(json.loads((out / "metrics.json").read_text())["test"]["mrr"], rel=1e-6)
    # What a model.ckpt records is checked before the model it describes is allocated, and its weights after.
    import torch

    state = torch.load(out / "model.ckpt", weights_only=True)
    for change, said in (
        (lambda s: s["feature_widths"].update(img=2**40), "feature widths"),
        (lambda s: s["config"]["model"].update(rank=2**40), "recorded configuration is out of range"),
        (lambda s: next(iter(s["state_dict"].values())).view(-1)[0].fill_(float("nan")), "NaN or inf"),
    ):
        damaged = {
            **state,
            "feature_widths": dict(state["feature_widths"]),
            "config": json.loads(json.dumps(state["config"])),
            "state_dict": {k: v.clone() for k, v in state["state_dict"].items()},
        }
        change(damaged)
        torch.save(damaged, tmp_path / "damaged.ckpt")
        with pytest.raises(ValueError, match=said):
            iidfusion.load_model(tmp_path / "damaged.ckpt")


def test_compare_writes_table(tiny_kg_folder, tmp_path, capsys):
    img, ling = write_features(tiny_kg_folder, tmp_path)
    out = tmp_path / "cmp"
    code = main(
        [
            "kg",
            "compare",
            "--config",
            str(small_config(tmp_path)),
            "--data",
            str(tiny_kg_folder),
            "--features",
            f"img={img}",
            f"ling={ling}",
            "--max-epochs",
            "2",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "| baseline | 0 | 0 |" in printed and "| iid | 0.1 | 0.1 |" in printed
    payload = json.loads((out / "results.json").read_text())
    assert [(r["arm"], r["seed"]) for r in payload["runs"]] == [
        ("baseline", 0),
        ("iid", 0),
        ("baseline", 1),
        ("iid", 1),
    ]
    assert {t["metric"] for t in payload["paired_tests"]} == {"mrr", "hits@1", "hits@3", "hits@10"}
    assert (out / "results.csv").read_text().startswith("arm,seed,alpha,beta")
    assert all(t["p_holm"] is None or t["p_holm"] >= t["p_value"] for t in payload["paired_tests"])
    assert "| p | p (Holm) |" in printed and payload["provenance"]["torch"] and payload["config"]["data"]
    # the table: the mean over the 2 seeds with the half-width of its 95 % t interval (not a standard deviation)
    mrr = [r["test"]["mrr"] if "test" in r else r["mrr"] for r in payload["runs"] if r["arm"] == "baseline"]
    mean, half = t_interval(mrr)
    assert "95 % t interval" in printed and f"| baseline | 0 | 0 | {mean:.3f} ± {half:.3f} |" in printed
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "results.csv", "results.json", "results.md", "runs"]
    for arm in ("baseline", "iid"):  # each run's checkpoints and logs, as `iidfusion compare`'s
        assert (out / "runs" / arm / "seed1" / "checkpoints" / "last.ckpt").is_file()
        assert (out / "runs" / arm / "seed1" / "csv" / "version_0" / "metrics.csv").is_file()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--features", "img=missing.npy"], "feature file not found"),
        (["--features", "img"], "NAME=FILE"),
        (["--data", "no/such/folder"], "neither a known knowledge graph"),
    ],
)
def test_user_errors_exit_2(extra, message, tmp_path, capsys):
    assert main(["kg", "fit", "--out", str(tmp_path / "x"), *extra]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_feature_width_mismatch_is_reported(tiny_kg_folder, tmp_path, capsys):
    from iidfusion.kg.data import load_triples_folder

    entities = load_triples_folder(tiny_kg_folder).entities
    vectors = {e: np.zeros(4) for e in entities} | {entities[3]: np.zeros(5)}
    (tmp_path / "bad.pkl").write_bytes(pickle.dumps(vectors))
    code = main(
        [
            "kg",
            "fit",
            "--data",
            str(tiny_kg_folder),
            "--features",
            f"ling={tmp_path / 'bad.pkl'}",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert code == 2
    assert f"entity {entities[3]!r} has a feature vector of width 5" in capsys.readouterr().err


def test_compare_takes_the_modalities_of_a_wn9img_folder(tmp_path, capsys):
    """A folder in TransAE's WN9-IMG layout (tests/fixtures/wn9img_layout) gives its own modalities: the text
    features in entity2id.txt's row order and the descriptions through the offline MiniLM."""
    config = yaml.safe_load(small_config(tmp_path).read_text())
    config["model"]["modality_weights"] = {"text": 0.3, "description": 0.3}
    (tmp_path / "text.yaml").write_text(yaml.safe_dump(config))
    out = tmp_path / "cmp"
    code = main(
        [
            "kg",
            "compare",
            "--config",
            str(tmp_path / "text.yaml"),
            "--data",
            str(REPO / "tests" / "fixtures" / "wn9img_layout"),
            "--vocabulary",
            "all",
            "--max-epochs",
            "2",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--out",
            str(out),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert (
        "modalities: structure, text (text_features.npy@entity2id.txt), description (minilm:descriptions.tsv)"
        in printed
    )
    assert "| baseline | 0 | 0 |" in printed and "| iid | 0.1 | 0.1 |" in printed
    config = json.loads((out / "results.json").read_text())["config"]
    assert config["features"] == {"text": "text_features.npy@entity2id.txt", "description": "minilm:descriptions.tsv"}
    assert len(list((tmp_path / "cache").glob("kg-texts-minilm-*.npy"))) == 1


def test_shipped_configs_load():
    from iidfusion.tasks.kg.config import load_experiment_config

    configs = {p.stem: load_experiment_config(p) for p in sorted((REPO / "configs" / "kg").glob("*.yaml"))}
    assert set(configs) == {
        "umls",
        "umls_mmkrl",
        "wn9img",
        "wn9img_text",
        "wn9img_text_cpu",
        "wn9img_text_mmkrl_cpu",
        "fbimg",
    }
    assert configs["umls_mmkrl"].model.name == configs["wn9img_text_mmkrl_cpu"].model.name == "mmkrl"
    assert configs["wn9img_text"].features == {
        "text": "text_features.npy@entity2id.txt",
        "description": "minilm:descriptions.tsv",
    }
    assert configs["wn9img"].model.modality_weights == {"img": 0.1, "ling": 0.8}
    assert configs["fbimg"].model.modality_weights == {"img": 0.1, "ling": 0.7}
    assert configs["fbimg"].train.batch_size == 5000 and configs["wn9img"].train.batch_size == 2000
    assert configs["umls"].data == "umls"


def test_wn9img_config_on_real_triples_with_fixture_features(wn9img_folder, tmp_path, monkeypatch, capsys):
    """The shipped WN9-IMG config end to end, on an excerpt of the real files (their exact bytes,
    CRLF included) and OTKGE-named .npy feature files next to them, found through $IIDFUSION_DATA."""
    from iidfusion.kg.data import load_triples_folder

    folder = tmp_path / "WN9IMG"
    shutil.copytree(wn9img_folder, folder)
    entities = load_triples_folder(folder, vocabulary="all").entities
    rng = np.random.default_rng(0)
    np.save(folder / "matrix_wn_visual.npy", rng.normal(size=(len(entities), 8)).astype(np.float32))
    np.save(folder / "matrix_wn_ling.npy", rng.normal(size=(len(entities), 6)).astype(np.float32))
    monkeypatch.setenv("IIDFUSION_DATA", str(tmp_path))
    out = tmp_path / "run"
    code = main(
        [
            "kg",
            "fit",
            "--config",
            str(REPO / "configs" / "kg" / "wn9img.yaml"),
            "--rank",
            "4",
            "--max-epochs",
            "2",
            "--accelerator",
            "cpu",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    assert f"wn9img: {len(entities):,} entities" in capsys.readouterr().out
    assert json.loads((out / "metrics.json").read_text())["test"]["mrr"] > 0


def test_compare_without_a_config_has_an_iid_arm_and_seeds_count(tmp_path):
    # the library's alpha and beta, and --seeds N meaning seeds 0..N-1 as in `compare`
    from iidfusion.cli.kg import _experiment
    from iidfusion.cli.main import build_parser
    from iidfusion.tasks.classification.config import LossConfig

    args = build_parser().parse_args(["kg", "compare", "--data", "umls", "--out", str(tmp_path / "o")])
    _, compare = _experiment(args)
    defaults = LossConfig()
    assert (compare.alpha, compare.beta, compare.seeds) == (defaults.alpha, defaults.beta, 3) and defaults.alpha > 0
    args = build_parser().parse_args(["kg", "compare", "--data", "umls", "--seeds", "2", "--beta", "0", "--out", "o"])
    assert _experiment(args)[1] == type(compare)(seeds=2, alpha=defaults.alpha, beta=0.0)


def test_compare_runs_the_mmkrl_model(tiny_kg_folder, tmp_path, capsys):
    img, ling = write_features(tiny_kg_folder, tmp_path)
    out = tmp_path / "cmp"
    code = main(
        [
            "kg",
            "compare",
            "--config",
            str(small_config(tmp_path)),
            "--model",
            "mmkrl",
            "--data",
            str(tiny_kg_folder),
            "--features",
            f"img={img}",
            f"ling={ling}",
            "--max-epochs",
            "2",
            "--seeds",
            "1",
            "--out",
            str(out),
            "--no-progress-bar",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "MMKRL-style baseline vs IID" in printed and "| iid | 0.1 | 0.1 |" in printed
    payload = json.loads((out / "results.json").read_text())
    assert payload["config"]["model"]["name"] == "mmkrl" and len(payload["runs"]) == 2


def test_unknown_model_is_one_line_exit_2(tmp_path, capsys):
    assert main(["kg", "compare", "--model", "transe", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--model" in err and "'transe'" in err and "mmkrl, otkge" in err
    assert not (tmp_path / "x").exists()
