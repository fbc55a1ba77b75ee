"""The commands of the studies, ``iidfusion bench | sweep``, registered in the entry-point group
``iidfusion.commands`` (``studies/pyproject.toml``); each module here parses flags and calls a study.

    iidfusion bench wasserstein | bench train     (docs/evidence.md, sections 1 and 3)
    iidfusion sweep --data handwritten --out DIR   (section 4)

Section 2 (the paper's Figure 4) is drawn by the library's own ``iidfusion plot``.
"""
