"""Feature-level multi-view data: one matrix per view, split, scaled and corrupted by the noise protocol.

* :mod:`~iidfusion.data.features.base`: ``MultiViewData``, ``MultiViewDataset``, ``DatasetSplits``.
* :mod:`~iidfusion.data.features.multiview` and :mod:`~iidfusion.data.features.layout`: ``.mat`` /
  ``.npz`` files of any layout, stratified splits, min-max scaling.
* :mod:`~iidfusion.data.features.registry`: ``load_dataset``, the named (bundled) data sets.
* :mod:`~iidfusion.data.features.noise`: the feature-noise protocol (docs/reproduce.md, "Noise protocol").
* :mod:`~iidfusion.data.features.synthetic`: the synthetic theory benchmark.
"""
