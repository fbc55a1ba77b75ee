from dataclasses import replace

from iidfusion.tasks.classification.config import load_config
from iidfusion.tasks.classification.run_key import data_identity, effective_options, run_key


def key(config, method="iid-l", seed=0, data="tiny"):
    return run_key(config, method, seed, data)


def test_options_a_method_does_not_read_leave_its_key_alone():
    config = load_config()
    same = [
        load_config(overrides={"loss.alpha": 0.7, "loss.variant": "aim"}),  # no L_ic in a base
        load_config(overrides={"loss.beta": 3.0, "loss.d1": 4}),  # nor L_dc
        load_config(overrides={"train.progress_bar": False, "train.loggers": "", "out": "elsewhere", "jobs": 4}),
        load_config(overrides={"datasets": "a,b", "variants": "aim", "seeds": 9, "methods": "main"}),
    ]
    for other in same:
        assert key(other, "if-static") == key(config, "if-static")
    assert key(same[0], "iid-l") != key(config, "iid-l"), "an IID method reads alpha and its reading"
    assert key(same[1], "iid-l-no-ic") != key(config, "iid-l-no-ic")
    assert key(same[0], "iid-l-no-ic") == key(config, "iid-l-no-ic"), "the ablation without L_ic ignores alpha"


def test_what_changes_a_result_changes_the_key():
    config = load_config()
    assert key(config, seed=1) != key(config)
    assert key(config, data="other") != key(config)
    assert key(load_config(overrides={"optim.lr": 0.01}), "if-static") != key(config, "if-static")
    assert key(load_config(overrides={"train.max_epochs": 3}), "lf-static") != key(config, "lf-static")


def test_tuning_enters_the_key_only_for_the_methods_it_tunes():
    config = load_config()
    tuned = replace(config, tune=replace(config.tune, enabled=True))
    assert key(tuned, "if-static") == key(config, "if-static"), "nothing of a base is tuned by default"
    assert key(tuned, "iid-l") != key(config, "iid-l")
    shared = replace(tuned, tune=replace(tuned.tune, lr=(1e-3, 1e-2)))
    assert key(shared, "if-static") != key(config, "if-static")
    assert key(replace(tuned, tune=replace(tuned.tune, storage="sqlite:///x.db")), "iid-l") == key(tuned, "iid-l")
    assert effective_options(tuned, "iid-l")["tune"]["space"] == {
        "alpha": [1.0, 0.1, 0.01, 0.001],
        "beta": [1.0, 0.1, 0.01],
    }


def test_files_are_identified_by_content_stamp(tmp_path):
    path = tmp_path / "views.npz"
    path.write_bytes(b"one")
    first = data_identity(str(path))
    path.write_bytes(b"other")
    assert data_identity(str(path)) != first
    assert data_identity("handwritten") == "handwritten"


def test_a_method_reads_the_options_of_its_own_strategy_only():
    config = load_config()
    pdf_option = load_config(overrides={"strategy.pdf.min_confidence": 0.01})
    qmf_option = load_config(overrides={"strategy.qmf.lam_rank": 0.1})
    static_option = load_config(overrides={"strategy.static.weights": "1,2,3"})
    for method, changed in (("if-pdf", pdf_option), ("qmf", qmf_option), ("lf-static", static_option)):
        assert key(changed, method) != key(config, method)
        for other in {pdf_option, qmf_option, static_option} - {changed}:
            assert key(other, method) == key(config, method), f"{method} reads another strategy's option"
    assert effective_options(config, "iid-q")["strategy"] == {
        "qmf": {"lam_rank": 1.0, "energy_temperature": 10.0, "min_weight": 1e-6}
    }
