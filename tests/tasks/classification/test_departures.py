"""The departures from the paper that every command and results file names."""

from iidfusion.tasks.classification.config import load_config
from iidfusion.tasks.classification.departures import departures_from_paper, departures_line


def _options(config, methods):
    return [d.option for d in departures_from_paper(config, methods)]


def test_the_default_iid_departs_only_by_its_scale_conventions_and_fixed_weights():
    assert _options(load_config(), ["iid-p"]) == ["loss.ic_reduction", "loss.dc_reduction", "tune.enabled"]
    tuned = load_config(overrides={"tune.enabled": True, "loss.ic_reduction": "sum", "loss.dc_reduction": "sum"})
    assert _options(tuned, ["iid-l", "iid-q", "iid-p"]) == ["loss.dc_reduction"]  # the paper sums ordered pairs
    assert departures_line(load_config(), ["lf-static", "qmf", "if-pdf"]).startswith("no departure")


def test_each_departure_is_named_only_for_the_methods_that_read_it():
    config = load_config(
        overrides={
            "loss.variant": "vib",
            "model.unimodal_heads": "shared",
            "eval.noise_mask": "shared",
            "strategy.pdf.calibrate": False,
            "loss.kl_scale": 2.0,
        }
    )
    assert _options(config, ["lf-static"]) == ["eval.noise_mask"]
    assert _options(config, ["if-pdf"]) == ["model.unimodal_heads", "strategy.pdf.calibrate", "eval.noise_mask"]
    assert set(_options(config, ["iid-l-no-dc"])) == {
        "loss.variant",
        "loss.ic_reduction",
        "tune.enabled",
        "loss.kl_scale",
        "model.unimodal_heads",
        "eval.noise_mask",
    }
    assert "loss.variant = vib (paper: paper" in departures_line(config, ["iid-q"])


def test_sampled_coherence_pairs_are_a_departure_of_the_methods_with_l_dc():
    config = load_config(overrides={"loss.dc_pairs": 3})
    assert "loss.dc_pairs" in _options(config, ["iid-l"])
    assert "loss.dc_pairs" not in _options(config, ["iid-l-no-dc", "if-static"])
    assert config.loss.coherence(16).pair_sample == 3 and load_config().loss.coherence(16).pair_sample is None
