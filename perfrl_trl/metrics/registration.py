"""Make `evaluate.load("perfrl/speedup")` work offline, straight after `pip install perfrl_trl`.

`evaluate.load("owner/name")` first asks the Hub for `name.py` in the Space `owner/name`; when that
fails for any reason (offline mode, no network, or no such Space) it falls back to its module cache
(`evaluate.loading.CachedEvaluationModuleFactory`, evaluate 0.4.x):

    <HF_MODULES_CACHE>/evaluate_modules/metrics/<owner>--<name>/<64-hex hash>/<name>.py

It lists the sub-folders whose name is 64 characters long, takes the one whose `<name>.py` has the
newest modification time, and imports `evaluate_modules.metrics.<owner>--<name>.<hash>.<name>`, so
every level needs an `__init__.py`. Registration writes exactly that layout, with the same hash that
evaluate itself would compute for the script (`files_to_hash`), which means a Hub download of the same
script lands in the same folder. It is idempotent: an unchanged script is not rewritten, it is only
made the newest again if another version was cached later, because the script imports this installed
package and must match it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

__all__ = [
    "AUTO_REGISTER_ENV",
    "METRIC_NAME",
    "ensure_registered",
    "metric_script_path",
    "modules_cache_dir",
    "register_metrics",
    "script_hash",
]

METRIC_NAME = "perfrl/speedup"
AUTO_REGISTER_ENV = "PERFRL_NO_AUTO_REGISTER"
_DYNAMIC_MODULES = "evaluate_modules"  # evaluate.config.MODULE_NAME_FOR_DYNAMIC_MODULES
_MODULE_TYPE = "metrics"


def metric_script_path() -> Path:
    """Path of the metric script shipped inside the package (`perfrl_trl/metrics/speedup/speedup.py`)."""
    return Path(__file__).resolve().parent / "speedup" / "speedup.py"


def modules_cache_dir() -> Path:
    """The `HF_MODULES_CACHE` that `evaluate` uses in this process.

    Read from `evaluate.config` when evaluate is already imported (it freezes the environment at import
    time); otherwise resolved from the environment exactly as `evaluate/config.py` does, so that
    `import perfrl_trl` does not have to pay for importing evaluate and datasets.
    """
    config = sys.modules.get("evaluate.config")
    if config is not None and hasattr(config, "HF_MODULES_CACHE"):
        return Path(config.HF_MODULES_CACHE)
    xdg_cache = os.getenv("XDG_CACHE_HOME", "~/.cache")
    hf_home = os.path.expanduser(os.getenv("HF_HOME", os.path.join(xdg_cache, "huggingface")))
    # evaluate does not expand "~" in HF_MODULES_CACHE itself; neither do we, to land where it looks.
    return Path(os.getenv("HF_MODULES_CACHE", os.path.join(hf_home, "modules")))


def script_hash(path: str | os.PathLike) -> str:
    """The folder name evaluate gives a script: `evaluate.loading.files_to_hash([path])`.

    Re-implemented (sha256 of the lines with `#` comments removed, empty lines dropped, joined by
    newlines) so that registering needs neither evaluate nor datasets; a test checks it against
    evaluate's own function.
    """
    with open(path, encoding="utf-8") as f:
        lines = f.readlines()
    kept = [line for line in (re.sub(r"#.*", "", line) for line in lines) if line]
    return hashlib.sha256("\n".join(kept).encode("utf-8")).hexdigest()


def _touch_init(directory: Path) -> None:
    init = directory / "__init__.py"
    if not init.exists():
        init.touch()


def _script_mtime(folder: Path, script_name: str) -> float:
    try:
        return (folder / script_name).stat().st_mtime
    except OSError:
        return float("-inf")


def register_metrics(force: bool = False, modules_cache: str | os.PathLike | None = None) -> Path:
    """Install the `perfrl/speedup` metric into evaluate's module cache, so it loads offline.

    After this, `evaluate.load("perfrl/speedup")` works without network access, with or without
    `HF_EVALUATE_OFFLINE=1`. Safe to call repeatedly and from several processes at once.

    Args:
        force (`bool`, defaults to `False`):
            Rewrite the cached copy even if it is already there (e.g. after editing the script in a
            development checkout), and remove cached versions that lack their script.
        modules_cache (`str` or `os.PathLike`, *optional*):
            The `HF_MODULES_CACHE` to write to; defaults to the one evaluate uses (`modules_cache_dir()`).

    Returns:
        `Path` of the cached script, `.../evaluate_modules/metrics/perfrl--speedup/<hash>/speedup.py`.

    Example:

    ```python
    >>> from perfrl_trl.metrics import register_metrics
    >>> import evaluate
    >>> path = register_metrics()
    >>> metric = evaluate.load("perfrl/speedup", "runtimes")
    >>> metric.compute(predictions=[0.5, None], references=[1.0, 1.0])["percent_optimized"]
    50.0
    ```
    """
    from filelock import FileLock  # a dependency of datasets and huggingface_hub, hence of evaluate

    source = metric_script_path()
    if not source.is_file():
        raise FileNotFoundError(f"The metric script is missing from the installed package: {source}")
    owner, name = METRIC_NAME.split("/")
    script_name = f"{name}.py"
    digest = script_hash(source)

    cache = Path(modules_cache) if modules_cache is not None else modules_cache_dir()
    dynamic = cache / _DYNAMIC_MODULES
    namespace = dynamic / _MODULE_TYPE
    module_dir = namespace / f"{owner}--{name}"
    target = module_dir / digest
    module_dir.mkdir(parents=True, exist_ok=True)
    for level in (cache, dynamic, namespace):
        _touch_init(level)

    # The same lock file evaluate takes while copying a script into this folder.
    with FileLock(str(module_dir) + ".lock"):
        _touch_init(module_dir)
        for folder in module_dir.iterdir():
            # evaluate stats <hash>/<name>.py of every 64-character folder: one without it breaks
            # every load of this metric, so such a folder is never left behind.
            if folder.is_dir() and len(folder.name) == 64 and not (folder / script_name).is_file():
                shutil.rmtree(folder, ignore_errors=True)
        if force and target.exists():
            shutil.rmtree(target)
        cached = target / script_name
        if not cached.is_file() or cached.read_bytes() != source.read_bytes():
            _write_version(source, target, script_name)
        newest_other = max(
            (
                _script_mtime(f, script_name)
                for f in module_dir.iterdir()
                if f.is_dir() and f != target and len(f.name) == 64
            ),
            default=float("-inf"),
        )
        if _script_mtime(target, script_name) <= newest_other:
            now = max(time.time(), newest_other + 1)
            os.utime(cached, (now, now))
    return cached


def _write_version(source: Path, target: Path, script_name: str) -> None:
    """Build the hash folder under a temporary name and rename it into place atomically.

    A concurrent `evaluate.load` never sees a 64-character folder without its script.
    """
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=target.parent))
    try:
        _touch_init(staging)
        shutil.copyfile(source, staging / script_name)
        readme = source.parent / "README.md"
        if readme.is_file():
            shutil.copyfile(readme, staging / "README.md")
        meta = {"original file path": str(source), "local file path": str(target / script_name)}
        (staging / (Path(script_name).stem + ".json")).write_text(json.dumps(meta), encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


_warned = False


def ensure_registered() -> Path | None:
    """Register the metric at `import perfrl_trl` time without ever breaking the import.

    Skipped when `PERFRL_NO_AUTO_REGISTER=1`. A failure (read-only cache, full disk) becomes a single
    warning that says how to register by hand.

    Returns:
        `Path` of the cached script, or `None` when skipped or failed.
    """
    global _warned
    if os.getenv(AUTO_REGISTER_ENV, "").strip().lower() in {"1", "true", "yes", "on"}:
        return None
    try:
        return register_metrics()
    except Exception as exc:  # never let a cache problem break `import perfrl_trl`
        if not _warned:
            _warned = True
            warnings.warn(
                f"perfrl_trl could not register the '{METRIC_NAME}' evaluate metric in "
                f"{modules_cache_dir()} ({type(exc).__name__}: {exc}). evaluate.load('{METRIC_NAME}') "
                "will need the Hub; run `perfrl-trl register-metrics` or load the script by path: "
                f"evaluate.load('{metric_script_path().parent}').",
                RuntimeWarning,
                stacklevel=2,
            )
        return None
