"""The KG configuration files (iidfusion.tasks.kg.config): the experiment and its ``compare``
section from one YAML file, read safely, a bad key one line naming it."""

import pytest

from iidfusion.core.config import check_rules
from iidfusion.tasks.kg.config import KGCompareConfig, KGExperimentConfig, kg_config_from_dict, load_kg_config


def write(tmp_path, text: str):
    path = tmp_path / "kg.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def one_line_error(call, *args) -> str:
    with pytest.raises(ValueError) as caught:
        call(*args)
    message = str(caught.value)
    assert "\n" not in message, message
    return message


def test_no_file_is_the_defaults():
    assert load_kg_config(None) == (KGExperimentConfig(), KGCompareConfig())


def test_the_experiment_and_its_compare_section_from_one_file(tmp_path):
    path = write(
        tmp_path,
        "data: wn9img\nvocabulary: all\nseed: 4\nfeatures: {img: img.npy}\n"
        "objective: {iid: {alpha: 0.2, coherence_points: 64}}\n"
        "train: {loggers: [csv], devices: 2}\n"
        "compare: {seeds: 5, beta: 0.3}\n",
    )
    config, compare = load_kg_config(path)
    assert (config.data, config.vocabulary, config.seed, config.features) == ("wn9img", "all", 4, {"img": "img.npy"})
    assert (config.objective.iid.alpha, config.objective.iid.coherence_points) == (0.2, 64)
    assert config.objective.iid.beta == 0.0 and config.objective.n3_weight == KGExperimentConfig().objective.n3_weight
    assert config.train.loggers == ("csv",) and config.train.devices == "2"  # coerced to the option's type
    assert compare == KGCompareConfig(seeds=5, alpha=KGCompareConfig().alpha, beta=0.3)
    # An empty compare section is the defaults.
    assert load_kg_config(write(tmp_path, "compare:\n"))[1] == KGCompareConfig()


@pytest.mark.parametrize(
    "text, message",
    [
        ("objective: {iid: {alfa: 1}}\n", "unknown config key 'objective.iid.alfa' in {path}; known keys: alpha, "),
        ("compare: {sedes: 2}\n", "unknown config key 'compare.sedes' in {path}; known keys: alpha, beta, seeds"),
        ("train: {max_epochs: ten}\n", "config key 'train.max_epochs' must be an int, got 'ten'"),
        ("compare: {seeds: many}\n", "config key 'compare.seeds' must be an int, got 'many'"),
        ("train: {progress_bar: maybe}\n", "config key 'train.progress_bar' must be true or false, got 'maybe'"),
        ("compare: 3\n", "compare in {path} must be a mapping of options, got 3"),
        ("- data\n", "config file {path} must hold a mapping of options, got list"),
    ],
)
def test_a_bad_key_is_one_line_naming_it_and_the_file(tmp_path, text, message):
    path = write(tmp_path, text)
    assert one_line_error(load_kg_config, path).startswith(message.format(path=path))


def test_yaml_is_read_safely(tmp_path):
    marker = tmp_path / "ran"
    path = write(tmp_path, f"data: !!python/object/apply:os.system ['touch {marker}']\n")
    assert one_line_error(load_kg_config, path).startswith(f"cannot read config file {path}: could not determine")
    assert not marker.exists()


def test_kg_config_from_dict_names_its_source():
    config = kg_config_from_dict({"model": {"rank": 3}, "train": {"tie_policy": "realistic"}}, "checkpoint x")
    assert config.model.rank == 3 and config.train.tie_policy == "realistic"
    assert one_line_error(kg_config_from_dict, {"compare": {"seeds": 2}}, "checkpoint x").startswith(
        "unknown config key 'compare' in checkpoint x"  # the compare section is no part of an experiment
    )


def test_ranges_are_the_options_rules_checked_after_loading(tmp_path):
    """Loading checks keys and types; the ranges are each option's rule (what a command checks)."""
    config, compare = load_kg_config(write(tmp_path, "train: {batch_size: 0}\ncompare: {seeds: 0}\n"))
    with pytest.raises(ValueError, match=r"^--batch-size \(train.batch_size\) must be in \[1, "):
        check_rules(config)
    with pytest.raises(ValueError, match=r"^--seeds \(compare.seeds\) must be in \[1, "):
        check_rules(compare, "compare.")
    with pytest.raises(ValueError, match=r"^--optimizer \(train.optimizer\) must be one of adagrad, adam, sgd"):
        check_rules(load_kg_config(write(tmp_path, "train: {optimizer: rmsprop}\n"))[0])
