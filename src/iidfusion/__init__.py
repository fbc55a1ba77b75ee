"""iidfusion: multimodal intermediate fusion with informatic constraint and distribution coherence.

Reference implementation of IID (ICLR 2026). Sub-packages:

* :mod:`iidfusion.ot` -- batched unbalanced Sinkhorn, Fourier + RIP reduction, W estimators.
* :mod:`iidfusion.fusion` -- fusion-weight strategies (static, QMF, PDF) and the IF / LF model.
* :mod:`iidfusion.losses` -- the informatic constraint L_ic, distribution coherence L_dc, IIDLoss.
* :mod:`iidfusion.data` -- multi-view files, the bundled data sets, the synthetic benchmark.
"""

__version__ = "0.1.0"
