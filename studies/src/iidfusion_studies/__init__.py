"""The evidence behind the paper's claims, measured on this implementation (docs/evidence.md).

* :mod:`~iidfusion_studies.estimator_study`: Wasserstein estimators against exact EMD
  (the paper's Figure 2), ``python -m iidfusion_studies bench wasserstein``.
* :mod:`~iidfusion_studies.train_cost`: time and peak memory of a training step, IID against
  its base methods, ``python -m iidfusion_studies bench train``.
* :mod:`~iidfusion_studies.monitoring`: inter-modal distance and validation accuracy per
  epoch read from run logs (the paper's Figure 4), ``python -m iidfusion_studies plot``.
* :mod:`~iidfusion_studies.sweep`: hyperparameter sensitivity over (alpha, beta, d1),
  ``python -m iidfusion_studies sweep``.

The command-line modules only parse flags; the logic lives here so it can be tested and
called from Python.
"""
