"""``perfrl-trl optimize`` and ``optimize_program``: a tiny T5 trained here on one bundled slow -> fast pair
proposes the fast program, which is verified in the sandbox; an untrained model finds nothing and nothing it
wrote is ever shown as optimized; the generic rewrites find a verified faster version of a script by
themselves, and the result says where it came from."""

from __future__ import annotations

import inspect
import json

import pytest
import torch

from perfrl_trl.cli import build_parser, main
from perfrl_trl.data.benchmark import generate_problems, to_dataset
from perfrl_trl.data.columns import make_prompt
from perfrl_trl.execution import ExecutionConfig, Executor
from perfrl_trl.inference import DEFAULT_PREFIX, optimize_program
from perfrl_trl.models import create_pretrained, load_model_and_tokenizer

pytestmark = pytest.mark.slow

TRIALS = 3  # with 3 timing trials a clean win has Mann-Whitney p = 0.05 = alpha: the fewest that can give R4


@pytest.fixture(scope="module")
def problem() -> dict:
    # The shortest fast program among a few "sum loop -> closed formula" problems keeps the memorisation short;
    # one test suffices, and its slow program runs ~0.2 s against ~3 ms for the formula: a robust R4.
    problems = generate_problems(4, families=["sum_formula"])
    chosen = min(problems, key=lambda p: len(p["best_code"]))
    return {**chosen, "tests": chosen["tests"][:1]}


@pytest.fixture(scope="module")
def files(problem, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("optimize")
    program = root / "slow.py"
    program.write_text(problem["input_code"], encoding="utf-8")
    tests = root / "tests" / "p0"
    tests.mkdir(parents=True)
    for i, test in enumerate(problem["tests"]):
        (tests / f"input.{i}.txt").write_text(test["input"], encoding="utf-8")
        (tests / f"output.{i}.txt").write_text(test["output"], encoding="utf-8")
    return {"root": root, "program": str(program), "tests": str(tests)}


@pytest.fixture(scope="module")
def trained_model(problem, tmp_path_factory) -> str:
    """A tiny T5 trained with plain cross-entropy until greedy decoding reproduces the fast program."""
    path = create_pretrained("t5", "tiny", tmp_path_factory.mktemp("t5-trained"), dropout_rate=0.0)
    model, tok = load_model_and_tokenizer(path)
    enc = tok([DEFAULT_PREFIX + problem["input_code"]], return_tensors="pt")
    labels = tok([problem["best_code"]], return_tensors="pt").input_ids[
        :, 1:
    ]  # T5 targets: text </s>, no <s>
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    # One thread: spin-waiting OpenMP threads on a busy 2-core machine make these tiny steps many times slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    reproduced = False
    for step in range(200):
        model.train()
        loss = model(**enc, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        # A low loss also makes most samples exact copies, which de-duplication then scores only once.
        if loss.item() < 0.05 and step % 5 == 0:
            model.eval()
            with torch.no_grad():
                out = model.generate(**enc, max_new_tokens=labels.shape[1] + 8, do_sample=False)
            reproduced = tok.decode(out[0], skip_special_tokens=True) == problem["best_code"]
            if reproduced:
                break
    torch.set_num_threads(threads)
    assert reproduced, f"the tiny T5 did not memorise the pair in {step + 1} steps (loss {loss.item():.3f})"
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def untrained_model(tmp_path_factory) -> str:
    return create_pretrained("t5", "tiny", tmp_path_factory.mktemp("t5-untrained"), seed=1)


def cli_args(files: dict, model: str, *extra: str) -> list[str]:
    return [
        "optimize", files["program"], "--tests", files["tests"], "--model", model, "-n", "4", "--seed", "0",
        "--max-new-tokens", "128", "--trials", str(TRIALS), *extra,
    ]  # fmt: skip


def test_prompts_match_the_benchmark_prompts(problem):
    """`perfrl-trl optimize` and `optimize_program` prompt a model as the benchmark rows it was trained on."""
    row = to_dataset([problem])[0]
    args = build_parser().parse_args(["optimize", "slow.py", "--tests", "t/", "--model", "m/"])
    # The CLI's default --prefix, read as the command reads it ('\\n' stands for a newline).
    assert make_prompt(row["input_code"], args.prefix.replace("\\n", "\n")) == row["prompt"]
    api_default = inspect.signature(optimize_program).parameters["prefix"].default
    assert make_prompt(row["input_code"], api_default) == row["prompt"]


def test_cli_finds_and_verifies_a_faster_version(problem, files, trained_model, capsys):
    output = files["root"] / "fast.py"
    status = main(cli_args(files, trained_model, "--json", "-o", str(output)))
    result = json.loads(capsys.readouterr().out)
    assert status == 0, result
    assert result["found"] is True and result["speedup"] >= 1.10
    # The closed formula beats any generic rewrite of the loop by far: the model's candidate is the best.
    assert result["source"] in ("beam", "sample") and result["message"].startswith(
        "verified faster version from the model"
    )
    assert result["tiers"]["R4"] >= 1 and result["generated"] == 5  # 4 samples + greedy
    assert output.read_text(encoding="utf-8") == result["program"] != problem["input_code"]
    assert result["diff"].startswith("--- slow.py\n+++ slow.py (optimized)\n") and "\n+" in result["diff"]
    # Judged again from scratch by an independent executor: the printed program really passes the tests.
    with Executor(ExecutionConfig(n_trials=TRIALS, workers=1)) as ex:
        verdict = ex.judge(result["program"], problem["tests"], time_it=False)
    assert verdict.passed, verdict

    # The text report: summary, diff and the verified program (verdicts now come from the executor's cache).
    assert main(cli_args(files, trained_model)) == 0
    text = capsys.readouterr().out
    assert text.startswith("FOUND  verified faster version from the model (")
    assert "+++ slow.py (optimized)" in text and text.rstrip().endswith(result["program"].rstrip())


def test_cli_untrained_model_finds_nothing_and_prints_no_program(problem, files, untrained_model, capsys):
    output = files["root"] / "never.py"
    # Without the generic rewrites, which could make this loop faster by themselves.
    status = main(cli_args(files, untrained_model, "--json", "-o", str(output), "--no-rewrites"))
    result = json.loads(capsys.readouterr().out)
    assert status == 1, result
    assert result["found"] is False and result["program"] is None and result["diff"] is None
    assert result["speedup"] is None and result["output"] is None and not output.exists()
    assert result["message"].startswith("no verified faster version")
    assert result["tiers"]["R4"] == 0 and sum(result["tiers"].values()) == result["distinct"] >= 1
    assert all("code" not in c for c in result["candidates"])

    assert main(cli_args(files, untrained_model, "--no-rewrites")) == 1
    text = capsys.readouterr().out
    assert text.startswith("NOT FOUND  no verified faster version") and "No candidate is shown" in text
    assert "optimized program" not in text and "+++" not in text


def test_cli_errors_exit_2(files, untrained_model, tmp_path, capsys):
    broken = tmp_path / "broken.py"
    broken.write_text("print(42)\n", encoding="utf-8")  # fails its own tests: nothing to optimise against
    argv = cli_args(files, untrained_model)
    argv[1] = str(broken)
    assert main(argv) == 2
    assert "does not pass its own tests" in capsys.readouterr().err
    assert main(cli_args(files, str(tmp_path / "no-such-model"))) == 2
    assert "cannot load model" in capsys.readouterr().err
    assert main(cli_args(files, untrained_model, "--tests", str(tmp_path))) == 2


def test_python_api_on_the_trained_model(problem, trained_model):
    model, tok = load_model_and_tokenizer(trained_model)
    program, tests = problem["input_code"], problem["tests"]
    result = optimize_program(
        program, tests, model, tok, n=3, max_new_tokens=128, seed=0,
        execution_config=ExecutionConfig(n_trials=TRIALS), rewrites=False,
    )  # fmt: skip
    assert result.found and result.speedup >= 1.10 and result.best != program
    best = next(c for c in result.candidates if c.code == result.best)
    assert best.details.tier == "R4" and best.details.passed and best.details.speedup == result.speedup
    assert result.runtime < result.baseline_runtime
    assert result.n_generated == 4 and len(result.candidates) + result.n_unchanged <= 4
    assert sum(c.count for c in result.candidates) + result.n_unchanged == result.n_generated
    assert result.diff(program).startswith("--- program.py\n+++ program.py (optimized)\n")
    assert result.message.startswith("verified faster version")
    with pytest.raises(ValueError, match="at least one candidate"):
        optimize_program(program, tests, model, tok, n=0, include_beam=False)


def test_cli_defaults_to_the_bundled_checkpoint_which_optimises_an_unseen_problem(problem, files, capsys):
    """No --model: the checkpoint shipped in the package, never trained on this (evaluation-seed) problem,
    finds a verified faster version of it."""
    from perfrl_trl.data.benchmark.pretraining import program_digest
    from perfrl_trl.models import BUNDLED_CHECKPOINT

    if not (BUNDLED_CHECKPOINT / "config.json").is_file():
        pytest.skip("no bundled checkpoint in this checkout")
    manifest = json.loads((BUNDLED_CHECKPOINT / "training_manifest.json").read_text())
    assert program_digest(problem["input_code"]) not in manifest["digests"]
    args = [a for a in cli_args(files, "unused", "--json") if a not in ("--model", "unused")]
    status = main([*args[:-1], "--max-new-tokens", "256", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert result["model"] == str(BUNDLED_CHECKPOINT)
    assert status == 0 and result["found"] and result["speedup"] >= 1.10, result
    assert result["source"] in ("beam", "sample"), result  # the model's program, not a generic rewrite


def test_optimize_dataset_runs_each_program_and_counts(problem, trained_model, untrained_model):
    from datasets import Dataset

    from perfrl_trl.inference import optimize_dataset

    rows = Dataset.from_list(
        [{"problem_id": "p0", "input_code": problem["input_code"], "tests": problem["tests"]}]
    )
    executor = Executor(ExecutionConfig(n_trials=TRIALS))
    try:
        found = optimize_dataset(
            rows, trained_model, n=3, max_new_tokens=128, executor=executor, progress=False
        )
        empty = optimize_dataset(
            rows, untrained_model, n=3, max_new_tokens=16, executor=executor, progress=False, rewrites=False
        )
    finally:
        executor.close()
    assert (found["programs"], found["found"], found["found_rate"]) == (1, 1, 1.0)
    assert (found["found_by_model"], found["found_by_rewrite"]) == (1, 0)
    outcome = found["outcomes"][0]
    assert outcome["problem_id"] == "p0" and outcome["speedup"] >= 1.10 and outcome["n_generated"] == 4
    assert found["candidate_compile_rate"] == outcome["n_compiled"] / 4 > 0
    # 16 random tokens of an untrained model never make a program: nothing found, nothing compiles
    assert (empty["found"], empty["candidate_compile_rate"]) == (0, 0.0)
    assert empty["outcomes"][0]["tiers"]["R1"] >= 1
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['tests'\]"):
        optimize_dataset(rows.remove_columns("tests"), untrained_model)


# A script whose top-level loop reads many lines with input(): reading with sys.stdin.readline and moving the
# loop into a function (locals instead of globals) are each worth well over the 1.10 margin here.
SCRIPT = """n = int(input())
total = 0
for i in range(n):
    x = int(input())
    total += x * x % 7
print(total)
"""


@pytest.fixture(scope="module")
def script_tests() -> list[dict]:
    xs = [(i * 7919) % 100003 for i in range(200_000)]
    text = f"{len(xs)}\n" + "".join(f"{x}\n" for x in xs)
    return [{"input": text, "output": f"{sum(x * x % 7 for x in xs)}\n"}]


def test_generic_rewrites_alone_find_a_verified_faster_version(script_tests):
    result = optimize_program(SCRIPT, script_tests, None, execution_config=ExecutionConfig(n_trials=TRIALS))
    assert result.found and result.speedup >= 1.10, result.message
    assert result.source.startswith("rewrite:") and "into_function" in result.source
    assert result.message.startswith("verified faster version from the generic rewrite")
    assert result.n_generated == 0 and all(not c.from_model and c.count == 0 for c in result.candidates)
    labels = {c.source for c in result.candidates}
    assert labels == {"rewrite:fast_input", "rewrite:into_function", "rewrite:fast_input+into_function"}
    # Judged again from scratch by an independent executor: the reported program really passes the tests.
    with Executor(ExecutionConfig(n_trials=TRIALS, workers=1)) as ex:
        assert ex.judge(result.best, script_tests, time_it=False).passed
    with pytest.raises(ValueError, match="nothing to try"):
        optimize_program(SCRIPT, script_tests, None, rewrites=False)


def test_optimize_dataset_counts_what_the_rewrites_found(script_tests):
    from datasets import Dataset

    from perfrl_trl.inference import optimize_dataset

    rows = Dataset.from_list([{"problem_id": "s0", "input_code": SCRIPT, "tests": script_tests}])
    report = optimize_dataset(rows, None, progress=False, execution_config=ExecutionConfig(n_trials=TRIALS))
    assert (report["found"], report["found_by_model"], report["found_by_rewrite"]) == (1, 0, 1)
    assert report["candidate_compile_rate"] is None  # no model, nothing generated
    outcome = report["outcomes"][0]
    assert outcome["source"].startswith("rewrite:") and outcome["n_generated"] == 0
    assert set(outcome["rewrites"]) == {"fast_input", "into_function", "fast_input+into_function"}
    assert "R4" in outcome["rewrites"].values()
