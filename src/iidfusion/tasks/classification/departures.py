"""Where a configuration departs from the paper's method (docs/method.md, "Departures from the paper").

The defaults are the paper's method as this reconstruction reads it; a setting that departs from
it is named wherever results are shown: on the first line of every training command, in every
results table and in the README. :func:`departures_from_paper` lists them for a configuration and
the methods it trains, each with the paper's setting and the reason, so the list can never
disagree with what ran.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from iidfusion.fusion.methods import get_method
from iidfusion.tasks.classification.config import ExperimentConfig

DOCS = 'docs/method.md, "Departures from the paper"'


@dataclass(frozen=True)
class Departure:
    """One setting that is not the paper's: the option, our value, the paper's, and why."""

    option: str
    ours: str
    paper: str
    why: str

    def __str__(self) -> str:
        return f"{self.option} = {self.ours} (paper: {self.paper}; {self.why})"


def departures_from_paper(config: ExperimentConfig, methods: Iterable[str]) -> list[Departure]:
    """The departures of ``config`` for the ``methods`` it trains (only what those methods read)."""
    specs = [get_method(name) for name in methods]
    with_ic = any(s.use_ic for s in specs)
    with_dc = any(s.use_dc for s in specs)
    loss, found = config.loss, []
    if with_ic and loss.variant not in ("paper", "aim"):
        found.append(Departure("loss.variant", loss.variant, "paper", "another reading of L_ic"))
    if with_ic and loss.ic_reduction != "sum":
        found.append(
            Departure("loss.ic_reduction", loss.ic_reduction, "sum", "L_ic's unimodal terms weigh the same for every M")
        )
    if with_dc:  # the paper sums W over ordered pairs m1 != m2, each pair twice: ours is a rescaled beta
        mapping = (
            "ours / (M (M - 1)), so that beta weighs the same for every M"
            if loss.dc_reduction == "mean"
            else "ours / 2"
        )
        found.append(
            Departure(
                "loss.dc_reduction",
                f"{loss.dc_reduction} over unordered pairs",
                "sum over ordered pairs",
                f"paper beta = {mapping}",
            )
        )
    if with_dc and loss.dc_pairs:
        found.append(
            Departure(
                "loss.dc_pairs",
                f"{loss.dc_pairs} random pairs a step",
                "every pair",
                "an unbiased estimate of L_dc at a fraction of its cost, for many views",
            )
        )
    if (with_ic or with_dc) and not config.tune.enabled:
        found.append(
            Departure(
                "tune.enabled",
                "false",
                "alpha and beta tuned on validation per data set",
                f"fixed alpha = {loss.alpha:g}, beta = {loss.beta:g}; --tune runs the paper's protocol",
            )
        )
    if with_ic and loss.kl_scale != 1.0:
        found.append(Departure("loss.kl_scale", f"{loss.kl_scale:g}", "1 (N(0, I))", "features at another scale"))
    if any(s.mode == "if" for s in specs) and config.model.unimodal_heads != "separate":
        found.append(
            Departure(
                "model.unimodal_heads",
                config.model.unimodal_heads,
                "separate",
                "g is also trained on every modality, against L_ic's second part",
            )
        )
    if any(s.strategy == "pdf" for s in specs) and not config.strategy.pdf.calibrate:
        found.append(Departure("strategy.pdf.calibrate", "false", "true", "no relative calibration at test time"))
    if config.eval.noise_mask != "independent":
        found.append(
            Departure(
                "eval.noise_mask", config.eval.noise_mask, "independent", "every view of a corrupted sample is noisy"
            )
        )
    return found


def departures_line(config: ExperimentConfig, methods: Iterable[str]) -> str:
    """One line naming every departure, or saying there is none."""
    found = departures_from_paper(config, methods)
    if not found:
        return f"no departure from the paper's method as this reconstruction reads it ({DOCS})"
    return f"departures from the paper ({DOCS}): " + "; ".join(str(d) for d in found)


def departures_sentence(config: ExperimentConfig, methods: Iterable[str]) -> str:
    """:func:`departures_line` as a sentence, for the paragraph of a results file."""
    line = departures_line(config, methods)
    return line[0].upper() + line[1:] + "."
