from dataclasses import dataclass, fields

import pytest

from iidfusion.core.config import check_rules, option
from iidfusion.engine.settings import DEFAULT_LOGGERS, LOGGER_EXTRAS, LOGGERS, trainer_option


@dataclass(frozen=True)
class Training:
    max_epochs: int = option(1, "epochs")
    num_nodes: int = trainer_option("num_nodes")
    loggers: tuple[str, ...] = trainer_option("loggers")
    checkpoints: bool = trainer_option("checkpoints")


def test_every_task_declares_a_trainer_option_alike():
    declared = {f.name: f for f in fields(Training)}
    assert Training().loggers == DEFAULT_LOGGERS and Training().checkpoints is True
    assert "docs/scaling.md" in declared["num_nodes"].metadata["help"]
    assert set(DEFAULT_LOGGERS) <= set(LOGGERS) and set(LOGGER_EXTRAS) <= set(LOGGERS)
    check_rules(Training(num_nodes=4))
    with pytest.raises(ValueError, match=r"num_nodes.* must be in \[1, "):
        check_rules(Training(num_nodes=0))
    with pytest.raises(KeyError):
        trainer_option("learning_rate")  # not a trainer option: each task declares its own
