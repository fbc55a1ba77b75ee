import math

import pytest
import torch

from iidfusion.fusion.methods import get_method
from iidfusion.tasks.classification.config import LossConfig
from iidfusion_studies.train_cost import (
    CostConfig,
    Trainer,
    handwritten_workload,
    render_markdown,
    resnet_bert_workload,
    run_cost_benchmark,
    write_costs,
)

TINY = CostConfig(
    methods=("if-static", "iid-l"),
    workloads=("handwritten-mlp",),
    rounds=1,
    steps=1,
    warmup=0,
    mlp_batch=16,
    loss_options=((("max_iter", 5), ("d2", 16)),),
)


def test_a_step_trains_the_model():
    trainer = Trainer(handwritten_workload(TINY), get_method("iid-l"), LossConfig(), torch.device("cpu"))
    before = [p.detach().clone() for p in trainer.model.parameters()]
    assert math.isfinite(trainer.step())
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters(), strict=True))


def test_tiny_benchmark_measures_and_reports(tmp_path):
    results = run_cost_benchmark(TINY)
    costs = {(c.method, c.options): c for c in results.costs}
    assert set(costs) == {
        ("if-static", "default"),
        ("iid-l", "default"),
        ("iid-l-no-ic", "default"),
        ("iid-l-no-dc", "default"),
        ("iid-l", "d2=16, max_iter=5"),
    }
    assert all(c.step_ms > 0 and c.loss_ms > 0 and len(c.round_ms) == 1 for c in costs.values())
    # the IID objective (task CE + L_ic + L_dc) costs more than the base objective alone
    assert costs[("iid-l", "default")].loss_ms > costs[("if-static", "default")].loss_ms
    base, iid = costs[("if-static", "default")], costs[("iid-l", "default")]
    # L_dc's (15, 16, 16) Sinkhorn tensors and L_ic's terms are live only in the IID step
    assert iid.peak_mib > base.peak_mib > 0
    assert costs[("iid-l", "d2=16, max_iter=5")].peak_mib > 0 and math.isnan(costs[("iid-l-no-dc", "default")].peak_mib)
    # a coarser reduction and a 5-iteration budget move L_dc further from its converged default value
    assert results.fidelity["d2=16, max_iter=5"] > results.fidelity["default"]
    assert results.analysed == "iid-l" and results.profile
    report = write_costs(results, tmp_path)
    assert report == render_markdown(results) == (tmp_path / "train_cost.md").read_text()
    assert "| static |" in report and "d2=16, max_iter=5" in report
    assert len((tmp_path / "train_cost.csv").read_text().splitlines()) == len(results.costs) + 1


def test_image_text_workload_runs_a_step():
    config = CostConfig(vl_batch=2, image_size=32, text_length=4)
    trainer = Trainer(resnet_bert_workload(config), get_method("iid-q"), LossConfig(), torch.device("cpu"))
    assert math.isfinite(trainer.step())
    assert set(trainer.batch["inputs"]) == {"image", "text"}


def test_config_errors():
    with pytest.raises(ValueError, match="unknown workload"):
        CostConfig(workloads=("imagenet",))
    with pytest.raises(ValueError, match="unknown loss option 'iters'"):
        CostConfig(loss_options=((("iters", 3),),))
    with pytest.raises(ValueError, match="unknown method"):
        CostConfig(methods=("iid-z",))


def test_paired_ratio_divides_round_by_round():
    from iidfusion_studies.train_cost import StepCost, paired_ratio

    def cost(rounds):
        return StepCost("w", "default", "m", 1.0, rounds, 1.0, math.nan, len(rounds))

    assert paired_ratio(cost((2.0, 4.0, 6.0)), cost((1.0, 2.0, 2.0))) == (2.0, 2.0, 3.0)
