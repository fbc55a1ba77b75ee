"""The commands of the studies, ``iidfusion bench | plot | sweep``, registered in the entry-point group
``iidfusion.commands`` (``studies/pyproject.toml``); each module here parses flags and calls a study.

    iidfusion bench wasserstein | bench train     (docs/evidence.md, sections 1 and 3)
    iidfusion plot --runs RUN ... --out FIG.png    (section 2, the paper's Figure 4)
    iidfusion sweep --data handwritten --out DIR   (section 4)
"""
