"""The options of IID's regularizers, one dataclass for every task (docs/method.md).

``IIDConfig`` is the ``loss`` section of the classification commands and, with the KG's own
defaults (:class:`iidfusion.kg.IIDTermsConfig`, a subclass), the ``objective.iid`` section of
``iidfusion kg``: the same names, meanings, range checks and one builder
(:meth:`IIDConfig.build_loss`), so an option added here reaches both tasks.
"""

from __future__ import annotations

from dataclasses import dataclass

from iidfusion.core.config import MAX_EPOCHS, MAX_WIDTH, Rule, at_least, one_of, option, positive
from iidfusion.losses.coherence import REDUCTIONS as DC_REDUCTIONS
from iidfusion.losses.coherence import DistributionCoherence
from iidfusion.losses.iid import IIDLoss
from iidfusion.losses.informatic import DEFAULT_VARIANT, VARIANT_ALIASES, VARIANTS, InformaticConstraint
from iidfusion.losses.informatic import REDUCTIONS as IC_REDUCTIONS


@dataclass(frozen=True)
class IIDConfig:
    """IID's regularizers (docs/method.md): L = task loss + alpha L_ic + beta L_dc + strategy terms.

    The defaults (reading, alpha, beta) are those the suite chose on validation accuracy for
    classification (docs/evidence.md, section 6).
    """

    alpha: float = option(1.0, "weight of the informatic constraint L_ic (methods with IC)", rule=at_least(0))
    beta: float = option(0.1, "weight of the distribution coherence L_dc (methods with DC)", rule=at_least(0))
    variant: str = option(
        DEFAULT_VARIANT,
        "L_ic reading: paper (the paper's objective), vib, margin or literal (docs/method.md)",
        rule=Rule(lambda v: v in VARIANTS or v in VARIANT_ALIASES, f"one of {', '.join(VARIANTS)}", tuple(VARIANTS)),
    )
    lam: float = option(0.1, "weight of the Gaussian KL terms inside L_ic", rule=at_least(0))
    kl_scale: float = option(
        1.0, "std r of the reference Gaussian N(0, r^2 I) of L_ic's KL terms (1: the paper's N(0, I))", rule=positive()
    )
    margin: float = option(0.1, "margin (nats) of the 'margin' L_ic reading", rule=at_least(0))
    ic_reduction: str = option(
        "mean",
        "L_ic's unimodal terms over modalities: mean, sum or weighted (by the fusion weights)",
        rule=one_of(IC_REDUCTIONS),
    )
    dc_reduction: str = option("mean", "L_dc over modality pairs: mean or sum", rule=one_of(DC_REDUCTIONS))
    d1: int = option(
        0, "Fourier bins kept per modality before the RIP projection (0: min(16, d/2+1))", rule=at_least(0, MAX_WIDTH)
    )
    d2: int = option(
        0,
        "RIP projection width (0: rip_dimension(d, d1) capped at d/2, always a reduction)",
        rule=at_least(0, MAX_WIDTH),
    )
    eps: float = option(0.1, "entropic regularization of the relaxed OT", rule=positive())
    rho: float = option(
        10.0, "marginal relaxation of the relaxed OT (KL weight)", rule=Rule(lambda v: v > 0, "> 0 (inf: balanced OT)")
    )
    max_iter: int = option(100, "Sinkhorn iteration budget of L_dc", rule=at_least(1, MAX_EPOCHS))
    dc_pairs: int = option(
        0,
        "modality pairs L_dc solves per step: 0 every pair (the paper's); k: k random pairs, an unbiased "
        "estimate at k/P of the cost, for many views (a departure)",
        rule=at_least(0, MAX_WIDTH),
    )

    def informatic(self) -> InformaticConstraint:
        """The L_ic module these options describe."""
        return InformaticConstraint(
            lam=self.lam,
            variant=self.variant,  # type: ignore[arg-type]  # one of VARIANTS: the option's rule
            reduction=self.ic_reduction,  # type: ignore[arg-type]  # one of REDUCTIONS: the option's rule
            margin=self.margin,
            kl_scale=self.kl_scale,
        )

    def coherence(
        self, width: int, *, seed: int = 0, module: type[DistributionCoherence] = DistributionCoherence
    ) -> DistributionCoherence:
        """The L_dc module for features of ``width`` (``module``: a subclass, e.g. one that
        gathers the features of every process first); ``seed`` draws the RIP matrix Phi.
        """
        return module(
            width,
            self.d1 or None,
            self.d2 or None,
            eps=self.eps,
            rho=self.rho,
            max_iter=self.max_iter,
            reduction=self.dc_reduction,
            seed=seed,
            pair_sample=self.dc_pairs or None,
        )

    def build_loss(
        self,
        width: int,
        *,
        use_ic: bool = True,
        use_dc: bool = True,
        coherence_points: int | None = None,
        seed: int = 0,
        coherence_module: type[DistributionCoherence] = DistributionCoherence,
        build_unused: bool = False,
    ) -> IIDLoss:
        """The :class:`IIDLoss` of a model whose fused features have ``width``.

        ``use_ic`` / ``use_dc``: whether the method trains with L_ic / L_dc (its weight is 0
        otherwise). A regularizer of weight 0 gets no module, unless ``build_unused`` (the
        classification engine builds L_dc for every method: it monitors the distances).
        ``coherence_points``: L_dc on at most that many samples of a batch.
        """
        alpha = self.alpha if use_ic else 0.0
        beta = self.beta if use_dc else 0.0
        informatic = self.informatic() if alpha > 0 or build_unused else None
        coherence = self.coherence(width, seed=seed, module=coherence_module) if beta > 0 or build_unused else None
        return IIDLoss(alpha, beta, informatic=informatic, coherence=coherence, coherence_points=coherence_points)
