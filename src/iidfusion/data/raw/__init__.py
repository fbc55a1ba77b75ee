"""Raw inputs: images and texts read from their files, the encoders' preprocessing, noise on the inputs.

* :mod:`~iidfusion.data.raw.vision_language`, :mod:`~iidfusion.data.raw.rgbd`, :mod:`~iidfusion.data.raw.hfm`:
  the raw data set readers and their torch datasets.
* :mod:`~iidfusion.data.raw.input_noise`: the noise protocol on raw inputs.
* :mod:`~iidfusion.data.raw.families`: the loaders, encoders and datasets of a family, used one way.
* :mod:`~iidfusion.data.raw.extraction` and :mod:`~iidfusion.data.raw.feature_cache`: frozen-encoder
  features, cached in ``load_dataset``'s split form.
"""
