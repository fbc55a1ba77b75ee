import multiprocessing
from dataclasses import replace

import pytest

from iidfusion.fusion.methods import get_method
from iidfusion.tasks.classification import tuning
from iidfusion.tasks.classification.config import TuneConfig
from iidfusion.tasks.classification.tuning import Trial, search_space, tune_method, validate_tune_config, with_params


def _tuned(config, **grids):
    return replace(config, tune=replace(config.tune, enabled=True, **grids))


def _trial(params, val_acc, val_loss, accuracy=0.5):
    return Trial(params, val_acc, val_loss, [{"noise": 0.0, "accuracy": accuracy, "macro_f1": accuracy}], 0, 1, 0.1)


def test_a_grid_applies_only_to_the_methods_that_have_its_hyperparameter():
    tune = TuneConfig(alpha=(1.0, 0.1), beta=(0.1,), variant=("vib", "margin"), lam=(0.1, 1.0), d1=(4,), lr=())
    assert search_space(tune, get_method("iid-l")) == {
        "alpha": (1.0, 0.1),
        "variant": ("vib", "margin"),
        "lam": (0.1, 1.0),
        "beta": (0.1,),
        "d1": (4,),
    }
    assert search_space(tune, get_method("iid-l-no-ic")) == {"beta": (0.1,), "d1": (4,)}
    assert search_space(tune, get_method("iid-p-no-dc")) == {
        "alpha": (1.0, 0.1),
        "variant": ("vib", "margin"),
        "lam": (0.1, 1.0),
    }
    assert search_space(tune, get_method("if-static")) == {}
    # a shared hyperparameter gets the same grid, the same budget, for every method
    shared = replace(tune, lr=(1e-3, 1e-2), weight_decay=(1e-4, 1e-2), l2=(0.0, 0.01))
    optimiser_grids = {"lr": (1e-3, 1e-2), "weight_decay": (1e-4, 1e-2), "l2": (0.0, 0.01)}
    for method in ("lf-static", "qmf", "if-pdf"):
        assert search_space(shared, get_method(method)) == optimiser_grids
    assert {
        k: v for k, v in search_space(shared, get_method("iid-q")).items() if k in optimiser_grids
    } == optimiser_grids


def test_a_tuned_optimiser_setting_reaches_the_trial_config(fast_config):
    chosen = tuning.with_params(fast_config, {"l2": 0.02, "weight_decay": 0.5, "lr": 3e-4})
    assert (chosen.optim.l2, chosen.optim.weight_decay, chosen.optim.lr) == (0.02, 0.5, 3e-4)


def test_selection_is_on_validation_ties_broken_by_validation_loss_then_grid_order():
    grid = [{"alpha": 1.0}, {"alpha": 0.1}, {"alpha": 0.01}]
    trials = [
        _trial({"alpha": 0.01}, 0.9, 0.30, accuracy=0.1),
        _trial({"alpha": 1.0}, 0.9, 0.20, accuracy=0.2),
        _trial({"alpha": 0.1}, 0.8, 0.10, accuracy=0.99),
    ]
    assert tuning._select(trials, grid).params == {"alpha": 1.0}  # the test accuracy plays no part
    equal = [_trial({"alpha": 0.01}, 0.9, 0.2), _trial({"alpha": 0.1}, 0.9, 0.2)]
    assert tuning._select(equal, grid).params == {"alpha": 0.1}


def test_tuning_trains_every_grid_point_and_reports_the_chosen_trials_test_metrics(tiny_splits, fast_config):
    config = _tuned(fast_config, alpha=(0.1, 0.01), beta=(0.1,), lr=())
    result = tune_method(tiny_splits, "iid-l", 0, config, data_id="tiny")
    assert [t.params for t in result.trials] == [{"alpha": 0.1, "beta": 0.1}, {"alpha": 0.01, "beta": 0.1}]
    best = max(result.trials, key=lambda t: (t.val_acc, -t.val_loss))
    assert result.best == best and result.failed == 0
    summary = result.summary()
    assert summary["chosen"] == best.params and len(summary["trials"]) == 2
    # the chosen configuration retrained gives the very metrics its trial recorded (seeded runs)
    from iidfusion.tasks.classification.fit import fit_method

    refit = fit_method(tiny_splits, "iid-l", 0, with_params(config, best.params))
    assert [m.accuracy for m in refit.metrics] == [m["accuracy"] for m in best.test]


def test_a_method_with_nothing_to_tune_is_one_plain_fit(tiny_splits, fast_config):
    result = tune_method(tiny_splits, "if-static", 0, _tuned(fast_config), data_id="tiny")
    assert result.space == {} and len(result.trials) == 1 and result.best.params == {}


def test_a_diverging_trial_is_recorded_as_failed_and_never_chosen(tiny_splits, fast_config, monkeypatch):
    real_fit = tuning.fit_method

    def fit(splits, method, seed, config, *args, **kwargs):
        if config.loss.alpha == 1.0:
            raise FloatingPointError("non-finite training loss")
        return real_fit(splits, method, seed, config, *args, **kwargs)

    monkeypatch.setattr(tuning, "fit_method", fit)
    result = tune_method(tiny_splits, "iid-l-no-dc", 0, _tuned(fast_config, alpha=(1.0, 0.1)), data_id="tiny")
    assert result.failed == 1 and [t.params for t in result.trials] == [{"alpha": 0.1}]
    with pytest.raises(FloatingPointError, match="every tuning trial diverged"):
        tune_method(tiny_splits, "iid-l-no-dc", 0, _tuned(fast_config, alpha=(1.0,)), data_id="tiny2")


def _tune_in_child(splits, config, queue):
    result = tune_method(splits, "iid-l", 0, config, data_id="tiny")
    queue.put((result.best.params, sorted(tuple(sorted(t.params.items())) for t in result.trials)))


def test_two_processes_share_one_study_through_sqlite(tiny_splits, fast_config, tmp_path):
    """Two processes running the same tuning on one SQLite storage split the grid between them
    (no point is trained twice) and both select the same trial."""
    import optuna

    storage = f"sqlite:///{tmp_path / 'tune.db'}"
    config = _tuned(fast_config, alpha=(1.0, 0.1, 0.01), beta=(0.1, 0.01), storage=storage)
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    children = [context.Process(target=_tune_in_child, args=(tiny_splits, config, queue)) for _ in range(2)]
    for child in children:
        child.start()
    answers = [queue.get(timeout=120) for _ in children]
    for child in children:
        child.join(timeout=60)
        assert child.exitcode == 0
    assert answers[0] == answers[1]
    (summary,) = optuna.get_all_study_summaries(storage)
    study = optuna.load_study(study_name=summary.study_name, storage=storage)
    trained = [t for t in study.get_trials() if not t.user_attrs.get("duplicate")]
    assert len(trained) == 6, "each of the 6 grid points trained once, by one of the processes"
    assert len({tuple(sorted(t.params.items())) for t in trained}) == 6
    assert all("result" not in t.user_attrs for t in study.get_trials() if t.user_attrs.get("duplicate"))
    assert len(answers[0][1]) == 6


@pytest.mark.parametrize(
    "grids, message",
    [
        ({"sampler": "random"}, "unknown sampler"),
        ({"alpha": (float("nan"),)}, "alpha"),
        ({"lr": (0.0,)}, "lr"),
        ({"weight_decay": (-1e-4,)}, "weight_decay"),
        ({"l2": (float("inf"),)}, "l2"),
        ({"beta": (0.1, 0.1)}, "repeats"),
        ({"variant": ("sideways",)}, "unknown L_ic reading"),
        ({"d1": (-1,)}, "d1"),
        ({"trials": -2}, "trials"),
    ],
)
def test_bad_tuning_options_are_refused_before_anything_trains(grids, message):
    with pytest.raises(ValueError, match=message):
        validate_tune_config(replace(TuneConfig(), **grids))


def _open_at_once(barrier, config, queue):
    barrier.wait()  # every process creates the storage and the study at the same instant
    try:
        study = tuning.open_study(config, "iid-l", 0, "tiny")
        queue.put(study.study_name)
    except Exception as error:  # reported to the test, which names it
        queue.put(f"{type(error).__name__}: {error}")


@pytest.mark.parametrize("attempt", range(3))
def test_processes_started_at_the_same_instant_on_a_fresh_sqlite_file_all_open_the_study(
    fast_config, tmp_path, attempt
):
    """A job array: three processes create the tables of a fresh SQLite file and the study at once
    (without retries, one of them died of "UNIQUE constraint failed: alembic_version")."""
    import optuna

    storage = f"sqlite:///{tmp_path / f'fresh{attempt}.db'}"
    config = _tuned(fast_config, alpha=(1.0, 0.1), storage=storage)
    context = multiprocessing.get_context("fork")
    barrier, queue = context.Barrier(3), context.Queue()
    children = [context.Process(target=_open_at_once, args=(barrier, config, queue)) for _ in range(3)]
    for child in children:
        child.start()
    answers = [queue.get(timeout=120) for _ in children]
    for child in children:
        child.join(timeout=60)
    assert len(set(answers)) == 1 and answers[0].startswith("iidfusion-"), answers
    assert [s.study_name for s in optuna.get_all_study_summaries(storage)] == answers[:1]


class _PruneTheTinyLearningRate:
    """A pruner that stops the trials of one grid point, whatever they report (deterministic)."""

    def prune(self, study, trial):
        return trial.params.get("lr") == 1e-9


def test_a_pruned_trial_stops_early_is_recorded_and_never_chosen(tiny_splits, fast_config, monkeypatch):
    """With --pruner, each epoch's validation accuracy is reported to the trial and a trial the
    pruner stops ends there: recorded as pruned (with its epoch), not selected."""
    import optuna

    monkeypatch.setattr(optuna.pruners, "MedianPruner", lambda **_: _PruneTheTinyLearningRate())
    config = _tuned(
        replace(fast_config, train=replace(fast_config.train, max_epochs=3)), alpha=(), beta=(), lr=(1e-2, 1e-9)
    )
    config = replace(config, tune=replace(config.tune, pruner="median"))
    lines = []
    result = tune_method(tiny_splits, "iid-l", 0, config, data_id="tiny-pruned", log=lines.append)
    assert [t.params for t in result.trials] == [{"lr": 1e-2}] and result.best.params == {"lr": 1e-2}
    assert result.pruned == 1 and result.failed == 0 and result.summary()["pruned_trials"] == 1
    assert any("lr=1e-09: pruned after epoch 1" in line for line in lines), lines
    assert result.trials[0].epochs == 3


def test_the_pruners_are_optunas_and_the_trial_hears_every_epoch(fast_config):
    import optuna

    assert isinstance(tuning.PRUNERS["median"](optuna, 10), optuna.pruners.MedianPruner)
    assert isinstance(tuning.PRUNERS["hyperband"](optuna, 10), optuna.pruners.HyperbandPruner)
    assert isinstance(tuning.PRUNERS["none"](optuna, 10), optuna.pruners.NopPruner)
    with pytest.raises(ValueError, match="pruner"):
        from iidfusion.tasks.classification.config import load_config
        from iidfusion.tasks.classification.validation import validate_config

        validate_config(load_config(overrides={"tune.pruner": "sometimes"}))


def test_a_claim_of_a_process_that_died_before_finishing_the_final_model_is_stale(fast_config, tmp_path):
    """The earliest live claim trains the final model; a claim of a process of this machine that
    is gone and left no finished run does not keep it from being trained."""
    import os
    import socket

    import optuna

    config = _tuned(fast_config, alpha=(1.0, 0.1), storage=f"sqlite:///{tmp_path / 'tune.db'}")
    study = tuning.open_study(config, "iid-l", 0, "tiny")
    dead = multiprocessing.get_context("fork").Process(target=os._exit, args=(0,))
    dead.start()
    dead.join()
    with pytest.warns(UserWarning, match="Heartbeat"):  # a trial that is no trial, as the claims are
        trial = study.ask()
    trial.set_user_attr("final_fit", {"pid": dead.pid, "host": socket.gethostname(), "folder": str(tmp_path / "x")})
    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    assert tuning.claim_final_fit(config, "iid-l", 0, "tiny", tmp_path / "y", claim=False) is None
    assert tuning.claim_final_fit(config, "iid-l", 0, "tiny", tmp_path / "y") is None  # this process wins
    holder = tuning.claim_final_fit(config, "iid-l", 0, "tiny", tmp_path / "z")  # a second claim of the same
    assert holder is not None and (holder.pid, holder.folder) == (os.getpid(), str(tmp_path / "y"))
