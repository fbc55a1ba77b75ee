"""benchmarks/verdict.py: the selection rule, the waves, the cache key and the statistics of docs/protocol.md."""

import math

import numpy as np
import pytest

from iidfusion.tasks.classification.compare import RunOutcome
from iidfusion.tasks.classification.config import load_config
from iidfusion.tasks.classification.report import EvalResult
from tests.benchmark_modules import benchmark_module

# The key of one cell of the running protocol (test_the_cache_key_of_a_known_cell_is_pinned).
PINNED_KEY = "ce3046c4098207fa7c1be4de"


@pytest.fixture(scope="module")
def verdict():
    """The script as a module."""
    return benchmark_module("verdict")


def _outcome(val_acc, val_loss=0.5, test=(0.8, 0.7, 0.6)):
    results = [EvalResult("iid-p", 0, n, "all", a, a) for n, a in zip((0.0, 5.0, 10.0), test, strict=True)]
    return RunOutcome(results, val_acc, val_loss, epochs=3, seconds=1.0, is_global_zero=True)


class _Memory:
    """The cache's reading side, in memory."""

    def __init__(self, config):
        self.outcomes = {}
        self.configs = {"set": config}

    def get(self, cell):
        return self.outcomes.get(cell)


def _iid_cells(verdict, config, seed=0):
    arm = verdict.iid_arm(verdict.protocol_arms(), "pdf")
    return [verdict.Cell("set", arm, seed, p) for p in verdict.trial_params(arm, config)]


def test_every_tuned_arm_has_the_same_budget(verdict):
    config = load_config()
    tuned = [a for a in verdict.protocol_arms() if a.grid]
    assert {len(verdict.trial_params(a, config)) for a in tuned} == {6}
    assert {a.role for a in tuned} == {"base", "iid", "reading"}
    base = next(a for a in tuned if a.role == "base")
    lrs = {dict(p)["optim.lr"] for p in verdict.trial_params(base, config)}
    assert lrs == {f * config.optim.lr for f in verdict.LR_FACTORS}  # relative to the configured lr


def test_selection_reads_validation_accuracy_then_loss_then_grid_order(verdict):
    config = load_config()
    cells = _iid_cells(verdict, config)
    cache = _Memory(config)
    for k, cell in enumerate(cells):
        cache.outcomes[cell] = _outcome(0.5 + 0.01 * k, test=(0.1, 0.1, 0.1))
    assert verdict.chosen(cells[:-1], cache) == cells[-2]  # the best validation accuracy
    assert verdict.chosen(cells, cache) == cells[-1]
    cache.outcomes[cells[1]] = _outcome(0.9, val_loss=0.4)
    cache.outcomes[cells[3]] = _outcome(0.9, val_loss=0.3)
    cache.outcomes[cells[4]] = _outcome(0.9, val_loss=math.nan)  # a NaN loss loses the tie
    cache.outcomes[cells[5]] = _outcome(0.9, val_loss=0.3)
    assert verdict.chosen(cells, cache) == cells[3]  # then the lower loss, then the first in grid order
    del cache.outcomes[cells[0]]
    assert verdict.chosen(cells, cache) is None  # not before every trial has run


def test_selection_never_reads_test(verdict):
    config = load_config()
    cells = _iid_cells(verdict, config)
    cache = _Memory(config)
    for k, cell in enumerate(cells):
        cache.outcomes[cell] = _outcome(0.7, test=(0.1 * k, 0.1 * k, 0.1 * k))
    first = verdict.chosen(cells, cache)
    for k, cell in enumerate(cells):
        cache.outcomes[cell] = _outcome(0.7, test=(1 - 0.1 * k,) * 3)
    assert verdict.chosen(cells, cache) == first == cells[0]


def test_followers_take_iid_s_choice_once_it_is_known(verdict):
    config = load_config()
    sets = [verdict.VerdictSet("set", config, seeds=2)]
    arms = verdict.protocol_arms()
    cache = _Memory(config)
    followers = [a for a in arms if a.follow]
    untuned = verdict.follower_cells(sets, arms, 0, cache)
    assert len(untuned) == len(followers) and all(c.params == () for c in untuned)
    for strategy in verdict.STRATEGIES:
        iid = verdict.iid_arm(arms, strategy)
        cells = [verdict.Cell("set", iid, 0, p) for p in verdict.trial_params(iid, config)]
        for k, cell in enumerate(cells):
            cache.outcomes[cell] = _outcome(0.9 if k == 4 else 0.5)
    choice = dict(verdict.trial_params(verdict.iid_arm(arms, "static"), config)[4])
    tuned = [c for c in verdict.follower_cells(sets, arms, 0, cache) if c.params]
    assert len(tuned) == len(followers)
    for cell in tuned:
        assert dict(cell.params) == {k: choice[k] for k in cell.arm.follow}
    assert verdict.follower_cells(sets, arms, 2, cache) == []  # past the set's seeds


def test_the_cell_key_is_what_the_result_depends_on(verdict, tmp_path):
    """Moving the data or the code keeps a key; the data's bytes, the seed or an option the method reads change it."""
    data = np.random.default_rng(0)
    arrays = {"a": data.normal(size=(30, 3)), "b": data.normal(size=(30, 2)), "y": np.arange(30) % 3}
    for folder in ("one", "two"):
        (tmp_path / folder).mkdir()
        np.savez(tmp_path / folder / "set.npz", **arrays)
    arm = verdict.iid_arm(verdict.protocol_arms(), "static")

    def key(folder="one", seed=0, params=(), **overrides):
        config = load_config(overrides={"data": str(tmp_path / folder / "set.npz"), **overrides})
        task = verdict.Cell("set", arm, seed, params).task(config)
        return verdict.cell_key(task, verdict.data_digest(config.data))

    assert key() == key("two")
    assert key() == key(**{"train.progress_bar": True, "train.loggers": ["csv"]})
    assert key() == key(**{"loss.eps": load_config().loss.eps})  # an option at its default is not in the key
    assert key() != key(seed=1)
    assert key() != key(params=(("loss.alpha", 0.1),))
    np.savez(tmp_path / "two" / "set.npz", **{**arrays, "y": arrays["y"][::-1]})
    assert key() != key("two")
    assert verdict.data_digest("handwritten") == "bundled:handwritten"


def test_the_cache_key_of_a_known_cell_is_pinned(verdict):
    """A new option that a fit does not read (or reads at a default that keeps the old results) must leave every
    cached cell's key as it was: the verdict's cache holds days of fits. If a change is meant to change results,
    bump RESULTS_VERSION and this literal together.
    """
    arm = verdict.iid_arm(verdict.protocol_arms(), "pdf")
    task = verdict.Cell("handwritten", arm, 3, (("loss.alpha", 0.1), ("loss.beta", 1.0))).task(verdict.common_config(1))
    assert verdict.cell_key(task, verdict.data_digest("handwritten")) == PINNED_KEY


def test_across_sets_counts_sets_not_seeds(verdict):
    per_set = {"a": np.array([1.0, 1.0, 1.0]), "b": np.array([2.0, -1.0]), "c": np.array([0.0, 0.0]), "d": -np.ones(9)}
    result = verdict.across_sets(per_set)
    assert (result["sets"], result["wins"], result["losses"], result["ties"]) == (4, 2, 1, 1)
    assert result["pooled"] == pytest.approx((1.0 + 0.5 + 0.0 - 1.0) / 4)
    assert result["p_sign"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("p_holm", "ci", "expected"),
    [
        (0.01, (0.2, 1.0), "helps"),
        (0.01, (-1.0, -0.2), "hurts"),
        (0.01, (-0.1, 1.0), "no detectable effect"),
        (0.2, (0.2, 1.0), "no detectable effect"),
        (math.nan, (math.nan, math.nan), "no detectable effect"),
    ],
)
def test_verdict_needs_both_the_test_and_the_interval(verdict, p_holm, ci, expected):
    assert verdict.verdict_of({"p_holm": p_holm, "ci": ci}) == expected


def test_analysis_finds_an_effect_on_every_set_and_none_on_noise(verdict):
    """Rows as arm_scores makes them: IID-P 1 pp above IF-pdf on each of 10 sets, level with LF-pdf up to noise."""
    config = load_config()
    sets = [verdict.VerdictSet(f"s{k}", config, seeds=3) for k in range(10)]
    rng = np.random.default_rng(0)
    rows = []
    for s in sets:
        for seed in range(3):
            base = 70 + rng.normal()
            scores = {"IID-P": base + 1.0 + 0.1 * rng.normal(), "IF-pdf": base, "LF-pdf": base + 1.0 + rng.normal()}
            for arm, score in scores.items():
                rows.append({"protocol": "tuned", "dataset": s.name, "arm": arm, "seed": seed, "test_avg": score})
    stats = verdict.analyse(rows, sets)
    primary = {(e["ours"], e["theirs"]): e for e in stats["tuned/primary"]}
    over_if = primary["IID-P", "IF-pdf"]
    assert over_if["verdict"] == "helps" and over_if["sets"] == 10 and over_if["wins"] == 10
    assert over_if["ci"][0] > 0.5 and over_if["p_holm"] >= over_if["p_wilcoxon"]
    assert primary["IID-P", "LF-pdf"]["verdict"] == "no detectable effect"
    assert primary["IID-L", "IF-static"]["sets"] == 0  # arms with no rows: no sets, no verdict
    assert primary["IID-L", "IF-static"]["verdict"] == "not run yet"
    per_set = {r["dataset"]: r for r in over_if["per_set"]}
    assert per_set["s0"]["seeds"] == 3 and per_set["s0"]["ci"][0] < per_set["s0"]["difference"]


def test_interim_report_says_so(verdict):
    config = load_config()
    sets = [verdict.VerdictSet("s", config, seeds=1, note="10/10/10")]
    stats = verdict.analyse([], sets)
    state = {
        "cells_planned": 10,
        "cells_done": 3,
        "commits": ["abc"],
        "head": "abc",
        "fit_hours": 0.1,
        "check": {"checked": 0, "reproduced": 0, "mismatches": []},
    }
    text = verdict.render(sets, verdict.protocol_arms(), [], stats, state)
    assert "**INTERIM**: 3 of 10 cells" in text and "Left:" not in text  # no estimate before a cell has run
    estimated = verdict.render(sets, verdict.protocol_arms(), [], stats, {**state, "fit_hours_left": 5.0})
    assert "Left: 7 planned fits, about 5.0 h of fitting" in estimated and "about 2.5 h of wall time" in estimated
    complete = verdict.render(sets, verdict.protocol_arms(), [], stats, {**state, "cells_done": 10})
    assert "**Complete**" in complete and "INTERIM" not in complete


def test_report_from_an_empty_cache_is_interim_and_names_its_data(verdict, tmp_path, capsys):
    data = np.random.default_rng(0)
    path = tmp_path / "views.npz"
    np.savez(path, a=data.normal(size=(60, 4)), b=data.normal(size=(60, 3)), y=np.arange(60) % 2)
    out = tmp_path / "out"
    assert (
        verdict.main(["report", "--datasets", str(path), "--seeds", "1", "--work", str(tmp_path), "--out", str(out)])
        == 0
    )
    report = (out / "verdict.md").read_text()
    # one seed: 72 grid cells and the 9 followers at the defaults (their tuned cells wait for IID's choice)
    assert "**INTERIM**: 0 of 81 cells" in report
    assert "views" in report and "60/20/20" in report  # 70/10/20 leaves 6 validation samples
    assert not (out / "verdict.csv").exists()
    # A damaged archive of finished cells beside it: one line naming it, exit 2, nothing written.
    (out / verdict.ARCHIVE).write_text('{"dataset": "views"}\n')
    argv = ["report", "--datasets", str(path), "--seeds", "1", "--work", str(tmp_path / "w"), "--out", str(out)]
    assert verdict.main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"verdict: {out / verdict.ARCHIVE}: not an archive of this script (") and "\n" not in error
    assert not (tmp_path / "w" / "cells").exists()


def test_the_archive_of_finished_cells_fills_a_fresh_cache(verdict, tmp_path):
    config = load_config()
    sets = [verdict.VerdictSet("set", config, seeds=1)]
    cells = _iid_cells(verdict, config)
    kept = verdict.Cache(tmp_path / "one", sets)
    for k, cell in enumerate(cells[:4]):
        kept.save(cell, _outcome(0.5 + 0.1 * k, val_loss=math.nan if k == 0 else 0.5), commit="abc")
    archive = tmp_path / verdict.ARCHIVE
    archive.write_text(kept.export(cells))
    assert len(archive.read_text().splitlines()) == 4
    fresh = verdict.Cache(tmp_path / "two", sets)
    assert fresh.adopt(archive) == 4 and fresh.adopt(archive) == 0  # once: a cell in the cache is kept as it is
    for cell in cells[:4]:
        assert verdict._fingerprint(fresh.get(cell)) == verdict._fingerprint(kept.get(cell))
        assert fresh.record(cell)["commit"] == "abc"
    assert fresh.get(cells[4]) is None
    assert fresh.adopt(tmp_path / "absent.jsonl") == 0


def test_the_time_left_is_estimated_per_data_set_and_method(verdict):
    arms = {a.name: a for a in verdict.protocol_arms()}
    iid, base = arms["IID-L"], arms["IF-static"]

    def record(dataset, arm, seconds):
        return {"dataset": dataset, "method": arm.method, "outcome": {"seconds": seconds}}

    records = [record("a", iid, 100.0), record("a", iid, 200.0), record("a", base, 30.0), record("b", base, 10.0)]
    pending = [
        verdict.Cell("a", iid, 1, ()),  # its set and method: 150 s
        verdict.Cell("b", iid, 1, ()),  # its set only: 10 s
        verdict.Cell("c", base, 1, ()),  # nothing known: the mean of all, 85 s
    ]
    assert verdict.hours_left(pending, records) == pytest.approx((150 + 10 + 85) / 3600)
    assert verdict.hours_left(pending, []) is None


def test_the_sensitivity_check_leaves_out_the_set_of_fewest_validation_samples(verdict):
    config = load_config()
    sizes = {"big": 300, "tiny": 40, "mid": 120, "small": 41}
    sets = [verdict.VerdictSet(name, config, seeds=2, val_size=size) for name, size in sizes.items()]
    assert verdict.smallest_set(sets) == "tiny" and verdict.smallest_set(sets[:2]) == ""
    rng = np.random.default_rng(0)
    rows = [
        {"protocol": "tuned", "dataset": s.name, "arm": arm, "seed": seed, "test_avg": 70 + rng.normal()}
        for s in sets
        for seed in range(2)
        for arm in ("IID-P", "IF-pdf")
    ]
    entry = {(e["ours"], e["theirs"]): e for e in verdict.analyse(rows, sets)["tuned/primary"]}["IID-P", "IF-pdf"]

    def differences(name):
        scores = {
            arm: [r["test_avg"] for r in rows if (r["dataset"], r["arm"]) == (name, arm)] for arm in ("IID-P", "IF-pdf")
        }
        return np.subtract(scores["IID-P"], scores["IF-pdf"])

    kept = {name: differences(name) for name in sizes if name != "tiny"}
    assert entry["without"] == "tiny" and entry["sets"] == 4
    assert entry["p_wilcoxon_without_smallest"] == pytest.approx(verdict.across_sets(kept)["p_wilcoxon"])
    assert "Wilcoxon p w/o tiny" in verdict.family_table([entry])
