"""The evidence behind the paper's claims, measured on this implementation (docs/evidence.md).

* :mod:`~iidfusion_studies.estimator_study`: Wasserstein estimators against exact EMD
  (the paper's Figure 2), ``iidfusion bench wasserstein``.
* :mod:`~iidfusion_studies.train_cost`: time and peak memory of a training step, IID against
  its base methods, ``iidfusion bench train``.
* The paper's Figure 4 (inter-modal distance and validation accuracy per epoch, from run logs)
  is the library's own ``iidfusion plot`` (:mod:`iidfusion.tasks.classification.monitoring`).
* :mod:`~iidfusion_studies.sweep`: hyperparameter sensitivity over (alpha, beta, d1),
  ``iidfusion sweep``.

The command-line modules only parse flags; the logic lives here so it can be tested and
called from Python.
"""
