"""A pretraining corpus of real Python that every machine already has: the standard library and the installed
distributions of the running interpreter.

Nothing is downloaded and nothing is copied into the repository: the files are read where the interpreter
installed them, at run time, and the manifest that [`build_corpus`] returns (versions, counts and the
[`program_digest`] of every kept file) is what makes a run reproducible and checkable on another machine.

Choices, and why:
- Standard library: the `.py` files under `sysconfig.get_paths()["stdlib"]` minus the exclusions of
  `scripts/train_tokenizer.py` (the bundled tokenizer was trained on the same tree): `site-packages` /
  `dist-packages` (they are the distributions, read separately with their versions), machine-specific files
  (`_sysconfigdata_*`, `config-*`), the `test` trees and the other test folders of the standard library
  (`tests` of `lib2to3` and `distutils`, `idlelib/idle_test`: many of their files are deliberately broken or
  Python 2 data), the codec tables of `encodings/` (long hex tables) and the prose dump `pydoc_data/`.
- Distributions: the `.py` files a distribution's `RECORD` lists (`dist.files`), so only what pip installed
  for it, under the version it reports. Their test folders are kept: unlike the standard library's, they are
  ordinary working code that exercises the library's API, which is what a code model should see. A caller
  who wants them out passes `package_exclude_dirs=("tests", "test")`.
- This project itself (`perfrl-trl`) is left out by default: its sources hold the benchmark's slow and fast
  program templates and its tests, which must not be pretrained on; and when Python runs from the checkout,
  its `.egg-info` would make the corpus depend on the current directory.
- Deduplication is by the SHA-256 of the file's bytes (the first occurrence wins, in the deterministic
  order: standard library, extra roots, then distributions by name), and exclusion is by
  [`program_digest`], the hash of the checkpoint's training manifest, so a caller can drop every PIE and
  every evaluation program by digest.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import inspect
import logging
import os
import platform
import re
import sysconfig
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from datasets import Dataset

logger = logging.getLogger(__name__)

STDLIB_PACKAGE = "python-stdlib"
# scripts/train_tokenizer.py's EXCLUDED_DIRS plus the standard library's other test folders.
STDLIB_EXCLUDED_DIRS = frozenset(
    {
        "site-packages",
        "dist-packages",
        "test",
        "tests",
        "idle_test",
        "encodings",
        "pydoc_data",
        "__pycache__",
    }
)
EXCLUDED_PREFIXES = ("_sysconfigdata", "config-")
DEFAULT_EXCLUDED_DISTRIBUTIONS = ("perfrl-trl",)
SKIP_REASONS = ("unreadable", "not_utf8", "empty", "too_large")
COLUMNS = ("text", "package", "version", "path", "sha256")


@dataclass(frozen=True)
class SourceFile:
    """One Python source file of the corpus.

    Args:
        package (`str`): The distribution's name as its metadata spells it, or `"python-stdlib"`.
        version (`str`): The distribution's version, or the interpreter's (`platform.python_version()`).
        path (`str`): POSIX path relative to the standard library's folder, the extra root, or the folder
            the distribution's `RECORD` is relative to (usually `site-packages`).
        sha256 (`str`): Hex SHA-256 of the file's bytes, which are its text encoded as UTF-8.
        text (`str`): The source, exactly as stored (line endings and a BOM, if any, kept).
    """

    package: str
    version: str
    path: str
    sha256: str
    text: str


def normalize_name(name: str) -> str:
    """A distribution name as PEP 503 compares them: `"PyYAML"`, `"pyyaml"` and `"py_yaml"` differ only in case
    and separators, so `"perfrl_trl"` and `"perfrl-trl"` are one name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _names(value: Iterable[str]) -> list[str]:
    """A list of names, a lone string being one name rather than its characters."""
    return [value] if isinstance(value, str) else list(value)


def _read(path: Path, max_bytes: int, stats: Counter) -> tuple[str, str] | None:
    """The text and SHA-256 of one file, read once, or `None` (counted in `stats`) when it is skipped."""
    try:
        # stat first, so that a huge generated file is never read into memory just to be dropped
        if path.stat().st_size > max_bytes:
            stats["too_large"] += 1
            return None
        raw = path.read_bytes()
    except OSError:  # a broken link, a permission problem, a file removed while scanning
        stats["unreadable"] += 1
        return None
    if len(raw) > max_bytes:  # grew between stat and read
        stats["too_large"] += 1
        return None
    try:
        text = raw.decode("utf-8")  # PEP 3120's default; files declaring another coding are rare, not guessed
    except UnicodeDecodeError:
        stats["not_utf8"] += 1
        return None
    if not text.strip():  # empty `__init__.py` files carry no code
        stats["empty"] += 1
        return None
    return text, hashlib.sha256(raw).hexdigest()


def _tree_files(root: Path, exclude_dirs: frozenset[str]) -> list[str]:
    """Sorted relative POSIX paths of the `.py` files under `root`, pruning excluded folders while walking."""
    found = []
    # os.walk with followlinks=False: a link to a folder cannot pull a second tree (or a loop) into the corpus
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in exclude_dirs and not d.startswith(EXCLUDED_PREFIXES)]
        rel = Path(folder).relative_to(root)
        for name in files:
            if name.endswith(".py") and not name.startswith(EXCLUDED_PREFIXES):
                found.append((rel / name).as_posix())
    return sorted(found)


def _tree_sources(
    package: str, version: str, root: Path, exclude_dirs: frozenset[str], max_bytes: int, stats: Counter
) -> Iterator[SourceFile]:
    for rel in _tree_files(root, exclude_dirs):
        read = _read(root / rel, max_bytes, stats)
        if read is not None:
            yield SourceFile(package, version, rel, read[1], read[0])


def _selected_distributions(
    names: Iterable[str] | None, exclude: Iterable[str]
) -> list[importlib.metadata.Distribution]:
    """Installed distributions sorted by normalized name, the first on `sys.path` winning (it is the one
    `import` finds), restricted to `names` when given."""
    excluded = {normalize_name(n) for n in exclude}
    wanted = None if names is None else {normalize_name(n) for n in names}
    chosen: dict[str, importlib.metadata.Distribution] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"] if dist.metadata is not None else None
        if not name:  # a broken metadata folder
            continue
        key = normalize_name(name)
        if key not in chosen and (wanted is None or key in wanted):
            chosen[key] = dist
    if wanted is not None and (missing := wanted - set(chosen)):
        raise importlib.metadata.PackageNotFoundError(", ".join(sorted(missing)))
    return [chosen[key] for key in sorted(chosen) if key not in excluded]


def python_sources(
    stdlib: bool = True,
    packages: bool = True,
    exclude_dirs: Iterable[str] = STDLIB_EXCLUDED_DIRS,
    max_bytes: int = 200_000,
    distributions: Iterable[str] | None = None,
    exclude_distributions: Iterable[str] = DEFAULT_EXCLUDED_DISTRIBUTIONS,
    package_exclude_dirs: Iterable[str] = (),
    roots: Iterable[tuple[str, str, str | os.PathLike]] = (),
    stats: Counter | None = None,
) -> Iterator[SourceFile]:
    """The Python source files of the running interpreter's standard library and installed distributions.

    Files come in a fixed order: the standard library (sorted paths), then each of `roots` in the given order
    (sorted paths), then the distributions sorted by PEP 503 name (each one's files sorted). Each file is read
    once. Unreadable, non-UTF-8, empty (only whitespace) and too large files are skipped and counted in
    `stats`. See the module docstring for what is excluded and why.

    Args:
        stdlib (`bool`, defaults to `True`):
            Include the standard library of `sysconfig.get_paths()["stdlib"]`, as package `"python-stdlib"`
            with version `platform.python_version()`.
        packages (`bool`, defaults to `True`):
            Include the installed distributions (`importlib.metadata.distributions()`).
        exclude_dirs (iterable of `str`, defaults to `STDLIB_EXCLUDED_DIRS`):
            Folder names pruned anywhere in the standard library and in `roots`. Names starting with
            `_sysconfigdata` or `config-` are always pruned (they describe the build machine).
        max_bytes (`int`, defaults to 200,000):
            Larger files are skipped (generated tables, vendored bundles).
        distributions (iterable of `str`, *optional*):
            Only these distributions (names compared as PEP 503 does); `PackageNotFoundError` names any that
            is not installed. `None` takes every installed one.
        exclude_distributions (iterable of `str`, defaults to `("perfrl-trl",)`):
            Distributions never read, even when named in `distributions`.
        package_exclude_dirs (iterable of `str`, defaults to `()`):
            Folder names whose files are dropped from the distributions (e.g. `("tests", "test")`); by
            default a distribution's tests are kept.
        roots (iterable of `(package, version, folder)`, defaults to `()`):
            Extra source trees read like the standard library, e.g. a project's checkout.
        stats (`collections.Counter`, *optional*):
            Updated while iterating with the skipped files per reason (`unreadable`, `not_utf8`, `empty`,
            `too_large`) and `distributions_without_files`, the distributions that list no files (no
            `RECORD`).

    Yields:
        [`SourceFile`]: package, version, relative path, SHA-256 and text of each kept file.

    Example:
        ```python
        >>> from collections import Counter
        >>> from perfrl_trl.data.corpus import python_sources
        >>> skipped = Counter()
        >>> files = list(python_sources(packages=False, stats=skipped))
        >>> {f.package for f in files}
        {'python-stdlib'}
        >>> any(f.path == "argparse.py" for f in files)
        True
        ```
    """
    stats = Counter() if stats is None else stats
    tree_excluded = frozenset(_names(exclude_dirs))
    if stdlib:
        yield from _tree_sources(
            STDLIB_PACKAGE,
            platform.python_version(),
            Path(sysconfig.get_paths()["stdlib"]),
            tree_excluded,
            max_bytes,
            stats,
        )
    for package, version, folder in roots:
        if not Path(folder).is_dir():  # os.walk would yield nothing, hiding a mistyped folder
            raise NotADirectoryError(f"root {folder} of package {package!r} is not a folder")
        yield from _tree_sources(package, version, Path(folder), tree_excluded, max_bytes, stats)
    if not packages:
        return
    dropped_dirs = frozenset(_names(package_exclude_dirs))
    wanted = None if distributions is None else _names(distributions)
    for dist in _selected_distributions(wanted, _names(exclude_distributions)):
        if dist.files is None:
            stats["distributions_without_files"] += 1
            continue
        name, version = dist.metadata["Name"], dist.version
        # RECORD may list a path twice (rare, but seen with hand-made wheels); read each once
        paths = sorted({str(f) for f in dist.files if f.suffix == ".py"})
        for rel in paths:
            if dropped_dirs and dropped_dirs.intersection(Path(rel).parts[:-1]):
                continue
            read = _read(Path(dist.locate_file(rel)), max_bytes, stats)
            if read is not None:
                yield SourceFile(name, version, rel, read[1], read[0])


def build_corpus(exclude_digests: Iterable[str] = (), **kwargs: Any) -> tuple[Dataset, dict]:
    """The deduplicated corpus of [`python_sources`] as a `datasets.Dataset`, with a manifest to reproduce it.

    The dataset is built in memory (no cache file, nothing written anywhere). A file whose SHA-256 was
    already seen is a duplicate (the first occurrence, in [`python_sources`]'s order, is kept). A file whose
    [`program_digest`] is in `exclude_digests` is dropped, every copy of it counted as excluded (not as a
    duplicate), so that no PIE program and no evaluation program can be in the corpus.

    Args:
        exclude_digests (iterable of `str`, defaults to `()`):
            [`program_digest`]s (16 hex digits of SHA-256) of programs that must not be in the corpus, e.g.
            `{program_digest(p) for p in pie_programs}` and the evaluation problems' programs.
        **kwargs:
            Passed to [`python_sources`] (`stdlib`, `packages`, `distributions`, `max_bytes`, `roots`, ...;
            not `stats`, which the manifest reports).

    Returns:
        `tuple[datasets.Dataset, dict]`: the rows (columns `text`, `package`, `version`, `path`, `sha256`, in
        [`python_sources`]'s order) and the manifest:
        - `python`: the interpreter's version; `settings`: the arguments that select the files;
        - `packages`: per package name, its `version` and number of kept `files`;
        - `counts`: `files` and `bytes` (UTF-8) kept, `duplicates`, `excluded`, and `skipped` per reason;
        - `digests`: the sorted [`program_digest`]s of the kept files, as in
          `perfrl_trl/models/checkpoint/training_manifest.json`.

    Example:
        ```python
        >>> from perfrl_trl.data.corpus import build_corpus
        >>> ds, manifest = build_corpus(stdlib=False, distributions=["tqdm"])
        >>> ds.column_names
        ['text', 'package', 'version', 'path', 'sha256']
        >>> manifest["counts"]["files"] == len(ds) == len(manifest["digests"])
        True
        ```
    """
    from datasets import Dataset, Features, Value

    from .benchmark.pretraining import program_digest

    if "stats" in kwargs:
        raise TypeError("build_corpus counts skipped files itself (manifest['counts']['skipped'])")
    # Bind once with the defaults: the manifest then records every setting, and a generator passed as
    # `roots` or `distributions` is consumed once (as a list) rather than once by the scan and once here.
    bound = inspect.signature(python_sources).bind(**kwargs)
    bound.apply_defaults()
    args = {
        key: value if value is None or isinstance(value, bool | int) else _names(value)
        for key, value in bound.arguments.items()
    }
    excluded_digests = frozenset(_names(exclude_digests))
    # A full SHA-256 or an upper-case digest would never match and silently let the programs through.
    if bad := sorted(d for d in excluded_digests if not re.fullmatch(r"[0-9a-f]{16}", d))[:3]:
        raise ValueError(
            f"exclude_digests must be program_digest values (16 lower-case hex digits), got {bad}"
        )
    stats: Counter = Counter()
    columns: dict[str, list[str]] = {name: [] for name in COLUMNS}
    seen: set[str] = set()
    digests: list[str] = []
    packages: dict[str, dict[str, Any]] = {}
    n_bytes = duplicates = excluded = 0
    for source in python_sources(**{**args, "stats": stats}):
        digest = program_digest(source.text)
        if digest in excluded_digests:
            excluded += 1
            continue
        if source.sha256 in seen:
            duplicates += 1
            continue
        seen.add(source.sha256)
        digests.append(digest)
        n_bytes += len(source.text.encode("utf-8"))
        entry = packages.setdefault(source.package, {"version": source.version, "files": 0})
        entry["files"] += 1
        for name in COLUMNS:
            columns[name].append(getattr(source, name))
    features = Features({name: Value("string") for name in COLUMNS})
    dataset = Dataset.from_dict(columns, features=features)

    settings: dict[str, Any] = {
        "stdlib": args["stdlib"],
        "packages": args["packages"],
        "max_bytes": args["max_bytes"],
        "distributions": None if args["distributions"] is None else sorted(args["distributions"]),
        "exclude_distributions": sorted(args["exclude_distributions"]),
        "exclude_dirs": sorted(args["exclude_dirs"]),
        "package_exclude_dirs": sorted(args["package_exclude_dirs"]),
        "roots": [[package, version, str(folder)] for package, version, folder in args["roots"]],
        "n_exclude_digests": len(excluded_digests),
    }
    skipped = {reason: stats[reason] for reason in SKIP_REASONS}
    if stats["distributions_without_files"]:
        skipped["distributions_without_files"] = stats["distributions_without_files"]
    manifest = {
        "python": platform.python_version(),
        "settings": settings,
        "packages": {name: packages[name] for name in sorted(packages)},
        "counts": {
            "files": len(dataset),
            "bytes": n_bytes,
            "duplicates": duplicates,
            "excluded": excluded,
            "skipped": skipped,
        },
        "digests": sorted(digests),
    }
    logger.info(
        "corpus: %d files (%.1f MB) from %d packages; %d duplicates, %d excluded, skipped %s",
        len(dataset),
        n_bytes / 1e6,
        len(packages),
        duplicates,
        excluded,
        skipped,
    )
    return dataset, manifest
