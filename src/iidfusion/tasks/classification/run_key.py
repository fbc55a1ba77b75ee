"""What a run depends on, as a key: equal keys mean interchangeable results.

A fit of one method with one seed depends on the data, the method, the seed, the code and the
options that method reads. Options it does not read (alpha for a method without L_ic, the
suite's list of data sets, the progress bar, the other strategies' options, ...) are left out, so that runs that differ
only in
them share a key: the suite trains each base once for all the L_ic readings it compares, a
resumed comparison reuses the runs it finished, and the processes sharing an Optuna storage
join the same study.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any

from iidfusion.fusion.methods import get_method
from iidfusion.tasks.classification.config import ExperimentConfig, config_to_dict, search_space

# Options that never change a result: where and how a run reports, and what other commands read.
_NEVER_READ = {
    "": ("method", "seed", "methods", "seeds", "jobs", "out", "datasets", "variants"),
    "train": ("progress_bar", "loggers", "checkpoints", "monitor_distances", "monitor_samples", "num_workers", "loop"),
}
# The loss options of each regularizer: read only by the methods that train with it.
IC_OPTIONS = ("alpha", "variant", "lam", "kl_scale", "margin", "ic_reduction")
DC_OPTIONS = ("beta", "d1", "d2", "eps", "rho", "max_iter", "dc_reduction", "dc_pairs")


@functools.cache
def code_fingerprint() -> str:
    """A hash of the package's source files: a changed line changes every key."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def effective_options(config: ExperimentConfig, method: str) -> dict[str, Any]:
    """The options of ``config`` that a fit of ``method`` reads, as a nested dict."""
    spec = get_method(method)
    options = config_to_dict(config)
    for section, keys in _NEVER_READ.items():
        node = options[section] if section else options
        for key in keys:
            node.pop(key, None)
    for keys, used in ((IC_OPTIONS, spec.use_ic), (DC_OPTIONS, spec.use_dc)):
        if not used:
            for key in keys:
                options["loss"].pop(key)
    # A method reads the options of its own strategy only.
    options["strategy"] = {spec.strategy: options["strategy"][spec.strategy]}
    space = search_space(config.tune, spec) if config.tune.enabled else {}
    # Tuned: the grids that apply and how they are searched. Nothing to tune: a plain fit.
    options["tune"] = (
        {
            "space": {k: list(v) for k, v in space.items()},
            "sampler": config.tune.sampler,
            "trials": config.tune.trials,
            "pruner": config.tune.pruner,
        }
        if space
        else None
    )
    return options


def run_key(config: ExperimentConfig, method: str, seed: int, data_id: str) -> str:
    """The key of one fit: ``data_id`` names the data (:func:`data_identity`)."""
    options = effective_options(config, method)
    options.pop("data")  # named by data_id, which also tells two files of one name apart
    payload = {"code": code_fingerprint(), "data": data_id, "method": method, "seed": seed, "options": options}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


def data_identity(data: str) -> str:
    """A bundled name as it is; a file by its resolved path, size and modification time; a
    feature cache folder by its path and manifest (which records the hash of every file).
    """
    path = Path(data)
    manifest = path / "manifest.json"
    if path.is_dir() and manifest.is_file():
        return f"{path.resolve()}:{hashlib.sha256(manifest.read_bytes()).hexdigest()}"
    if not path.is_file():
        return data
    stat = path.stat()
    return f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
