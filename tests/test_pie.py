"""PIE loader: columns and splits on a tiny fixture, clear errors on bad input, and the real data."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from perfrl_trl.data import DataError, FilterReport, filter_executable, load_pie
from perfrl_trl.data.pie import split_by_problem, split_of

PIE = Path(__file__).resolve().parents[1].parent / "shared" / "pie"

SLOW = "n = int(input())\n\nprint(sum(range(n + 1)))\n"
FAST = "n = int(input())\nprint(n * (n + 1) // 2)\n"
BROKEN = "n = int(input())\nprint(n +)\n"
WRONG = "print(42)\n"


def make_row(pid: str, code: str = SLOW, **extra) -> dict:
    return {"problem_id": pid, "input": code, "target": FAST, "runtime_lift": 2.0, "user_id": "u1", **extra}


def write_pie(
    root: Path, rows: list[dict | str], problems: dict[str, list[tuple[str, str]]]
) -> tuple[Path, Path]:
    """A PIE-shaped fixture: `pairs.jsonl` (dicts, or raw strings written as lines) and `tests/<pid>/`."""
    root.mkdir(parents=True, exist_ok=True)
    pairs = root / "pairs.jsonl"
    pairs.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    for pid, tests in problems.items():
        folder = root / "tests" / pid
        folder.mkdir(parents=True)
        for n, (stdin, stdout) in enumerate(tests):
            (folder / f"input.{n}.txt").write_text(stdin, newline="")
            (folder / f"output.{n}.txt").write_text(stdout, newline="")
    return pairs, root / "tests"


def sum_tests(k: int) -> list[tuple[str, str]]:
    return [(f"{n}\n", f"{n * (n + 1) // 2}\n") for n in range(1, k + 1)]


@pytest.fixture
def fixture(tmp_path):
    problems = {f"p{i:05d}": sum_tests(1 + i % 3) for i in range(10)}
    rows = [make_row(pid) for pid in problems for _ in range(2)]
    return write_pie(tmp_path / "pie", rows, problems)


def test_columns_and_tests(fixture):
    ds = load_pie(*fixture, prefix="Make it fast:\n")
    assert len(ds) == 20
    row = ds[0]
    assert row["prompt"] == "Make it fast:\n" + SLOW
    assert (row["input_code"], row["target_code"], row["problem_id"]) == (SLOW, FAST, "p00000")
    assert row["tests"] == [{"input": "1\n", "output": "1\n"}]
    assert ds[4]["tests"] == [{"input": f"{n}\n", "output": f"{n * (n + 1) // 2}\n"} for n in (1, 2, 3)]
    assert (row["runtime_lift"], row["user_id"], row["jsonl_line"]) == (2.0, "u1", 1)
    assert row["measured_runtime_v0"] is None  # absent from the fixture: null, not an error


def test_tests_keep_bytes_and_numeric_order(tmp_path):
    tests = [(f"{n}\r\n  \n", f"{n}\n") for n in range(12)]  # 12 files: "10" must sort after "9"
    pairs, tests_dir = write_pie(tmp_path, [make_row("p1")], {"p1": tests})
    (tests_dir / "p1" / "notes.md").write_text("ignored")
    got = load_pie(pairs, tests_dir)[0]["tests"]
    assert [t["input"] for t in got] == [stdin for stdin, _ in tests]


def test_splits_disjoint_deterministic_and_complete(fixture):
    fractions = {"train": 0.6, "validation": 0.2, "test": 0.2}
    dd = load_pie(*fixture, splits=fractions, seed=1)
    assert list(dd) == ["train", "validation", "test"]
    ids = {name: set(split["problem_id"]) for name, split in dd.items()}
    assert [len(v) for v in ids.values()] == [6, 2, 2]
    assert not (
        ids["train"] & ids["validation"] or ids["train"] & ids["test"] or ids["validation"] & ids["test"]
    )
    assert sum(len(split) for split in dd.values()) == 20
    again = load_pie(*fixture, splits=fractions, seed=1)
    assert {k: v["problem_id"] for k, v in again.items()} == {k: v["problem_id"] for k, v in dd.items()}
    other = load_pie(*fixture, splits=fractions, seed=2)
    assert {k: set(v["problem_id"]) for k, v in other.items()} != ids


def test_a_half_keeps_only_its_problems(fixture):
    halves = {h: load_pie(*fixture, half=h) for h in ("adapt", "eval")}
    for half, ds in halves.items():
        assert len(ds) > 0 and {split_of(pid) for pid in ds["problem_id"]} == {half}
    assert len(halves["adapt"]) + len(halves["eval"]) == 20
    with pytest.raises(ValueError, match="half must be one of"):
        load_pie(*fixture, half="test")


def test_split_fractions_are_checked():
    with pytest.raises(ValueError, match="sum to 1"):
        split_by_problem(["a", "b"], {"train": 0.5, "test": 0.4})
    with pytest.raises(ValueError, match="positive"):
        split_by_problem(["a", "b"], {"train": 1.0, "test": 0.0})
    with pytest.raises(ValueError, match="no problem"):
        split_by_problem(["a", "b"], {"train": 0.9, "validation": 0.05, "test": 0.05})


BAD_ROWS = {
    "malformed_json": ('{"problem_id": "p1", "input": ', r"pairs\.jsonl:2: malformed JSON"),
    "missing_column": (
        {"problem_id": "p1", "input": SLOW},
        r"pairs\.jsonl:2: missing column\(s\) \['target'\]",
    ),
    "not_an_object": ("[1, 2]", r"pairs\.jsonl:2: expected a JSON object"),
    "empty_code": (make_row("p1", code=""), r"pairs\.jsonl:2: column 'input' must be a non-empty string"),
    "path_in_problem_id": (make_row("../p1"), r"pairs\.jsonl:2: problem_id '\.\./p1' is not a plain folder"),
    "bad_number": (
        make_row("p1", runtime_lift="fast"),
        r"pairs\.jsonl:2: column 'runtime_lift' is not a number",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_ROWS))
def test_bad_rows_name_file_and_line(tmp_path, case):
    bad, pattern = BAD_ROWS[case]
    pairs, tests_dir = write_pie(tmp_path, [make_row("p1"), bad], {"p1": sum_tests(1)})
    with pytest.raises(DataError, match=pattern):
        load_pie(pairs, tests_dir)


def test_bad_test_folders_name_the_folder_or_file(tmp_path):
    pairs, tests_dir = write_pie(tmp_path, [make_row("p1"), make_row("p2")], {"p1": sum_tests(4)})
    with pytest.raises(DataError, match=r"tests[/\\]p2: missing test folder .*\(needed by .*pairs\.jsonl:2"):
        load_pie(pairs, tests_dir)

    (tests_dir / "p2").mkdir()
    with pytest.raises(DataError, match=r"tests[/\\]p2: empty test list"):
        load_pie(pairs, tests_dir)

    (tests_dir / "p2" / "input.0.txt").write_text("1\n")
    (tests_dir / "p2" / "output.0.txt").write_text("1\n")
    (tests_dir / "p1" / "output.3.txt").unlink()
    with pytest.raises(DataError, match=r"p1[/\\]input\.3\.txt: no matching output\.3\.txt"):
        load_pie(pairs, tests_dir)

    (tests_dir / "p1" / "input.3.txt").unlink()
    (tests_dir / "p1" / "output.7.txt").write_text("x\n")
    with pytest.raises(DataError, match=r"p1[/\\]output\.7\.txt: no matching input\.7\.txt"):
        load_pie(pairs, tests_dir)


def test_missing_files_are_data_errors(tmp_path, fixture):
    pairs, tests_dir = fixture
    with pytest.raises(DataError, match=r"nope\.jsonl: PIE pairs file not found"):
        load_pie(tmp_path / "nope.jsonl", tests_dir)
    with pytest.raises(DataError, match="nope: tests folder not found"):
        load_pie(pairs, tmp_path / "nope")
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(DataError, match=r"empty\.jsonl: no rows"):
        load_pie(tmp_path / "empty.jsonl", tests_dir)
    assert issubclass(DataError, ValueError)


class FakeVerdict:
    def __init__(self, passed: bool, status: str):
        self.passed, self.status = passed, status


class FakeExecutor:
    """Judges by looking at the code: enough to test the filter's bookkeeping without a sandbox."""

    def __init__(self):
        self.calls: list[int] = []

    def judge_many(self, jobs, time_it=True, progress=False):
        assert time_it is False  # correctness only
        self.calls.append(len(jobs))
        status = {SLOW: "passed", BROKEN: "compile_error", WRONG: "wrong_answer"}
        return [FakeVerdict(status[code] == "passed", status[code]) for code, _, _ in jobs]


def test_filter_keeps_passing_rows_and_caches(tmp_path):
    problems = {f"p{i}": sum_tests(2) for i in range(4)}
    rows = [make_row("p0"), make_row("p1", BROKEN), make_row("p2"), make_row("p3", WRONG), make_row("p0")]
    pairs, tests_dir = write_pie(tmp_path / "pie", rows, problems)
    fake = FakeExecutor()
    kwargs = {"executor": fake, "cache_dir": tmp_path / "cache", "progress": False, "return_report": True}
    ds, report = load_pie(pairs, tests_dir, filter_executable=True, **kwargs)
    assert ds["jsonl_line"] == [1, 3, 5]
    assert report == FilterReport(total=5, kept=3, dropped_by_status={"compile_error": 1, "wrong_answer": 1})
    assert str(report) == "kept 3/5 rows (60.0%); dropped: compile_error=1, wrong_answer=1"
    assert fake.calls == [3]  # rows 1 and 5 are identical: judged once
    again = load_pie(pairs, tests_dir, filter_executable=True, **kwargs)
    assert fake.calls == [3] and again[0]["jsonl_line"] == ds["jsonl_line"]  # all from the disk cache
    assert load_pie(pairs, tests_dir, return_report=True)[1] is None


def test_split_does_not_depend_on_filter(tmp_path, fixture):
    pairs, tests_dir = fixture
    fractions = {"train": 0.5, "test": 0.5}
    unfiltered = load_pie(pairs, tests_dir, splits=fractions)
    filtered = load_pie(
        pairs,
        tests_dir,
        splits=fractions,
        filter_executable=True,
        executor=FakeExecutor(),
        cache_dir=tmp_path,
    )
    assert {k: v["problem_id"] for k, v in filtered.items()} == {
        k: v["problem_id"] for k, v in unfiltered.items()
    }


needs_pie = pytest.mark.skipif(not PIE.exists(), reason="real PIE data not present at ../shared/pie")


@pytest.mark.pie
@needs_pie
def test_real_pie_loads_all_rows():
    ds = load_pie(PIE / "py_test_pairs.jsonl", PIE / "public_test_cases")
    assert len(ds) == 1000 and len(set(ds["problem_id"])) == 213
    assert all(1 <= len(tests) <= 8 for tests in ds["tests"])
    assert min(ds["runtime_lift"]) >= 1.25
    assert all(re.fullmatch(r"p\d{5}", pid) for pid in ds["problem_id"])
    dd = load_pie(PIE / "py_test_pairs.jsonl", PIE / "public_test_cases", splits={"train": 0.8, "test": 0.2})
    assert not set(dd["train"]["problem_id"]) & set(dd["test"]["problem_id"])
    assert len(dd["train"]) + len(dd["test"]) == 1000


@pytest.mark.pie
@pytest.mark.slow
@needs_pie
def test_real_pie_filter_through_the_sandbox(tmp_path):
    ds = load_pie(PIE / "py_test_pairs.jsonl", PIE / "public_test_cases")
    # The 40 rows PIE measured fastest keep the test short; a corrupted copy of one must be dropped.
    fastest = sorted(range(len(ds)), key=ds["measured_runtime_v0"].__getitem__)[:40]
    ds = ds.select(fastest)
    ds = ds.add_item(
        {**ds[0], "input_code": ds[0]["input_code"] + "\nprint(undefined_name)\n", "jsonl_line": -1}
    )
    kept, report = filter_executable(ds, cache_dir=tmp_path, progress=False)
    assert report.total == 41
    assert report.dropped_by_status.get("runtime_error", 0) >= 1
    assert -1 not in kept["jsonl_line"]
    assert report.kept_fraction > 0.5  # PerfRL keeps 72-76% of PIE; a broken sandbox would keep ~0


def test_split_of_is_fixed_and_checks_its_input():
    """The halves are a pure function of the id: these values must never change (the evaluation half must
    never have been trained on), whatever else is loaded."""
    assert [split_of(p) for p in ("p00001", "p00005", "p00053", "p03371")] == [
        "eval", "adapt", "eval", split_of("p03371")
    ]  # fmt: skip
    assert split_of("p00005") == "adapt" and split_of("p00001") == "eval"
    for bad in ("", "../p1", None, 3):
        with pytest.raises(ValueError, match="not a problem id"):
            split_of(bad)


@pytest.mark.pie
@needs_pie
def test_real_pie_halves_are_disjoint_and_no_eval_program_was_trained_on():
    """Both halves hold a fair share of PIE's 213 problems, every pair of a problem is on one side, and no
    program of the evaluation half (slow or fast) is in any shipped training manifest."""
    from perfrl_trl.data.benchmark.pretraining import program_digest
    from perfrl_trl.models import BUNDLED_CHECKPOINT

    rows = [json.loads(line) for line in (PIE / "py_test_pairs.jsonl").read_text().splitlines()]
    halves = {"adapt": set(), "eval": set()}
    for row in rows:
        halves[split_of(row["problem_id"])].add(row["problem_id"])
    assert not halves["adapt"] & halves["eval"]
    assert len(halves["adapt"]) + len(halves["eval"]) == 213
    assert min(len(h) for h in halves.values()) >= 0.4 * 213
    evaluation = {
        program_digest(r[k]) for r in rows if split_of(r["problem_id"]) == "eval" for k in ("input", "target")
    }
    manifests = sorted(Path(BUNDLED_CHECKPOINT).parent.rglob("training_manifest.json"))
    assert manifests, "no training manifest shipped"
    for path in manifests:
        trained = set(json.loads(path.read_text())["digests"])
        assert not evaluation & trained, path
    # A pretraining corpus holds no PIE program of either half (the recipe excludes them all by hash).
    every = {program_digest(r[k]) for r in rows for k in ("input", "target")}
    for path in sorted(Path(BUNDLED_CHECKPOINT).parent.rglob("corpus_manifest.json")):
        assert not every & set(json.loads(path.read_text())["digests"]), path
