"""The pretraining corpus of installed Python sources: real files, deduplicated, excluded by digest, counted."""

from __future__ import annotations

import hashlib
import importlib.metadata
import platform
import sysconfig
from collections import Counter
from pathlib import Path

import pytest

from perfrl_trl.data import SourceFile, build_corpus, python_sources
from perfrl_trl.data.benchmark.pretraining import program_digest

STDLIB = Path(sysconfig.get_paths()["stdlib"])


@pytest.fixture(scope="module")
def stdlib_files():
    skipped = Counter()
    return list(python_sources(packages=False, stats=skipped)), skipped


def test_stdlib_files_are_the_interpreters_own(stdlib_files):
    files, _ = stdlib_files
    assert len(files) > 300
    assert {(f.package, f.version) for f in files} == {("python-stdlib", platform.python_version())}
    paths = [f.path for f in files]
    assert paths == sorted(paths) and len(set(paths)) == len(paths)
    assert {"argparse.py", "json/decoder.py", "asyncio/events.py"} <= set(paths)
    for f in files:
        parts = Path(f.path).parts
        assert not {"test", "tests", "idle_test", "site-packages", "encodings", "pydoc_data"} & set(parts)
        assert not parts[0].startswith(("_sysconfigdata", "config-")), f.path
    argparse = next(f for f in files if f.path == "argparse.py")
    raw = (STDLIB / "argparse.py").read_bytes()
    assert argparse.text == raw.decode() and argparse.sha256 == hashlib.sha256(raw).hexdigest()


def test_an_override_of_exclude_dirs_brings_a_tree_back(stdlib_files):
    files, _ = stdlib_files
    with_encodings = [f.path for f in python_sources(packages=False, exclude_dirs={"test", "site-packages"})]
    assert "encodings/utf_8.py" in with_encodings
    assert not any(f.path.startswith("encodings/") for f in files)


def test_distribution_files_come_with_its_name_and_version():
    files = list(python_sources(stdlib=False, distributions=["TQDM"]))  # names compare as PEP 503 does
    dist = importlib.metadata.distribution("tqdm")
    assert {(f.package, f.version) for f in files} == {(dist.metadata["Name"], dist.version)}
    listed = sorted(str(p) for p in dist.files if p.suffix == ".py")
    assert [f.path for f in files] == [p for p in listed if Path(dist.locate_file(p)).read_text().strip()]
    assert any(f.path == "tqdm/std.py" for f in files)
    for f in files[:5]:
        assert f.text == Path(dist.locate_file(f.path)).read_text()


def test_this_project_is_left_out_unless_asked_and_missing_names_fail():
    files = list(python_sources(stdlib=False, distributions=["perfrl-trl", "tqdm"]))
    assert {f.package for f in files} == {"tqdm"}
    # From a checkout its .egg-info comes first on sys.path, installed its editable finder: either way some file.
    ours = list(python_sources(stdlib=False, distributions=["perfrl_trl"], exclude_distributions=()))
    assert ours and {f.package.replace("_", "-") for f in ours} == {"perfrl-trl"}
    with pytest.raises(importlib.metadata.PackageNotFoundError, match="no-such-dist"):
        list(python_sources(stdlib=False, distributions=["tqdm", "no_such_dist"]))


def test_folders_of_a_package_can_be_dropped():
    files = list(python_sources(stdlib=False, distributions=["tqdm"], package_exclude_dirs=["contrib"]))
    assert files and not any("/contrib/" in f.path for f in files)


@pytest.fixture
def tree(tmp_path):
    """A source tree with one file of each kind the scan must keep, drop or count."""
    (tmp_path / "pkg" / "__pycache__").mkdir(parents=True)
    (tmp_path / "a.py").write_text("def a():\n    return 1\n")
    (tmp_path / "pkg" / "copy_of_a.py").write_text("def a():\n    return 1\n")  # a duplicate
    (tmp_path / "pkg" / "secret.py").write_text("print('an evaluation program')\n")  # excluded by digest
    (tmp_path / "pkg" / "latin1.py").write_bytes(b"# coding: latin-1\nname = '\xe9'\n")  # not UTF-8
    (tmp_path / "pkg" / "big.py").write_text("x = 1\n" * 100)  # 600 bytes > max_bytes below
    (tmp_path / "pkg" / "__init__.py").write_text("\n\n")  # empty
    (tmp_path / "pkg" / "broken.py").symlink_to(tmp_path / "missing.py")  # unreadable (even for root)
    (tmp_path / "pkg" / "__pycache__" / "cached.py").write_text("x = 2\n")  # pruned folder
    (tmp_path / "notes.txt").write_text("x = 3\n")  # not Python
    (tmp_path / "z.py").write_text("def z():\n    return 'é'\r\n")  # kept byte for byte
    return tmp_path


def test_skipped_files_are_counted_by_reason(tree):
    skipped = Counter()
    files = list(
        python_sources(
            stdlib=False, packages=False, roots=[("demo", "1.0", tree)], max_bytes=500, stats=skipped
        )
    )
    assert [f.path for f in files] == ["a.py", "pkg/copy_of_a.py", "pkg/secret.py", "z.py"]
    assert {k: v for k, v in skipped.items() if v} == {
        "not_utf8": 1,
        "too_large": 1,
        "empty": 1,
        "unreadable": 1,
    }
    z = files[-1]
    assert z == SourceFile(
        "demo", "1.0", "z.py", hashlib.sha256((tree / "z.py").read_bytes()).hexdigest(), z.text
    )
    assert z.text.endswith("'é'\r\n")


def test_build_corpus_deduplicates_excludes_and_reports(tree):
    secret = (tree / "pkg" / "secret.py").read_text()
    ds, manifest = build_corpus(
        exclude_digests=[program_digest(secret)],
        stdlib=False,
        packages=False,
        roots=iter([("demo", "1.0", tree)]),  # a generator is read once, and still recorded
        max_bytes=500,
    )
    assert ds.column_names == ["text", "package", "version", "path", "sha256"]
    assert ds["path"] == ["a.py", "z.py"]  # the first copy of a.py wins, secret.py is gone
    assert secret not in ds["text"]
    counts = manifest["counts"]
    assert counts["files"] == 2 and counts["duplicates"] == 1 and counts["excluded"] == 1
    assert counts["skipped"] == {"unreadable": 1, "not_utf8": 1, "empty": 1, "too_large": 1}
    assert counts["bytes"] == sum(len(t.encode()) for t in ds["text"])
    assert manifest["packages"] == {"demo": {"version": "1.0", "files": 2}}
    assert manifest["digests"] == sorted(program_digest(t) for t in ds["text"])
    assert manifest["settings"]["roots"] == [["demo", "1.0", str(tree)]]
    assert manifest["python"] == platform.python_version()
    assert ds.cache_files == []  # built in memory: nothing written next to the data or in the repository


def test_stdlib_corpus_wins_over_a_copy_and_drops_an_excluded_real_file(tmp_path):
    argparse = (STDLIB / "argparse.py").read_text()
    json_init = (STDLIB / "json" / "__init__.py").read_text()
    (tmp_path / "vendored_json.py").write_text(json_init)
    ds, manifest = build_corpus(
        exclude_digests={program_digest(argparse)},
        packages=False,
        roots=[("vendor", "0.1", tmp_path)],
    )
    paths = set(ds["path"])
    assert "argparse.py" not in paths and "json/__init__.py" in paths
    assert "vendored_json.py" not in paths  # a duplicate of the standard library's copy, which came first
    assert set(ds["package"]) == {"python-stdlib"} and "vendor" not in manifest["packages"]
    assert manifest["counts"]["excluded"] == 1 and manifest["counts"]["duplicates"] >= 1
    assert manifest["digests"] == sorted(program_digest(t) for t in ds["text"])
    assert len(set(ds["sha256"])) == len(ds) == manifest["packages"]["python-stdlib"]["files"]
    again, manifest_again = build_corpus(
        exclude_digests={program_digest(argparse)}, packages=False, roots=[("vendor", "0.1", tmp_path)]
    )
    assert manifest_again == manifest and again["sha256"] == ds["sha256"]  # deterministic


def test_build_corpus_rejects_what_would_silently_do_nothing(tmp_path):
    with pytest.raises(TypeError):
        build_corpus(stdlib=False, packages=False, stats=Counter())
    with pytest.raises(TypeError):
        build_corpus(no_such_setting=True)
    full_sha = hashlib.sha256(b"x = 1\n").hexdigest()  # not a program_digest: it could never match
    with pytest.raises(ValueError, match="16 lower-case hex digits"):
        build_corpus(exclude_digests=[full_sha], stdlib=False, packages=False)
    with pytest.raises(NotADirectoryError, match="typo"):
        build_corpus(stdlib=False, packages=False, roots=[("typo", "1", tmp_path / "no_such_folder")])
