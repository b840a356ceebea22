"""The user-facing main job, end to end at a tiny size: `accelerate launch examples/train_pie.py`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from perfrl_trl.models import create_pretrained, load_model_and_tokenizer
from perfrl_trl.presets import preset_defaults
from perfrl_trl.reporting import provenance
from perfrl_trl.trainer.callbacks import rl_checkpoint_schedule, rl_eval_schedule

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "train_pie.py"
TINY = [
    "--preset",
    "tiny",
    "--sft_steps",
    "10",
    "--rl_steps",
    "1",
    "--rl_prompts",
    "4",
    "--max_eval",
    "3",
    "--disable_tqdm",
    "true",
]
RRHF = "SFT + RRHF (4 tests-only prompts, 1 pass)"  # the tiny preset splits train like the compare preset


def _launch(
    out: Path, *launch_args: str, extra=(), script=SCRIPT, args=TINY, accelerate: bool = True
) -> subprocess.CompletedProcess:
    """Run a recipe into `out`: with `accelerate launch` as its docs say, or (``accelerate=False``, or without
    accelerate installed) with plain python in one process, which skips the launcher's own start-up."""
    accelerate = shutil.which("accelerate") if accelerate else None
    launcher = [accelerate, "launch", *launch_args, "--mixed_precision", "no", "--dynamo_backend", "no"]
    cmd = [
        *(launcher if accelerate else [sys.executable]),
        str(script),
        *args,
        "--output_dir",
        str(out),
        *extra,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def tiny_pie(root: Path) -> Path:
    """A PIE-shaped folder of distinct "sum to n" programs: p00001 and p00002 in the evaluation half, p00000,
    p00005 and p00006 in the adaptation half, and in each half one program that fails its own test."""
    from perfrl_trl.data.pie import split_of

    slow = "n = int(input())\ns = 0\nfor i in range(n + 1):\n    s += i\nprint(s)\n"
    fast = "n = int(input())\nprint(n * (n + 1) // 2)\n"
    ids = ("p00001", "p00002", "p00000", "p00005", "p00006")
    rows = [{"problem_id": pid, "input": slow + "#" * k, "target": fast} for k, pid in enumerate(ids)]
    rows += [{"problem_id": pid, "input": "print(0)\n", "target": fast} for pid in ("p00002", "p00005")]
    assert [split_of(pid) for pid in ids] == ["eval", "eval", "adapt", "adapt", "adapt"]
    (root / "public_test_cases").mkdir(parents=True)
    (root / "py_test_pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for pid in ids:
        folder = root / "public_test_cases" / pid
        folder.mkdir()
        (folder / "input.0.txt").write_text("300000\n")
        (folder / "output.0.txt").write_text(f"{300000 * 300001 // 2}\n")
    return root


GRPO = "SFT + GRPO (4 tests-only prompts, same wall time)"


@pytest.mark.slow
def test_train_pie_writes_table_plot_and_model(tmp_path):
    # A decoder-only model, so that stage 2c (TRL's GRPOTrainer) runs too; the two-process test below runs the T5.
    out = tmp_path / "run"
    proc = _launch(out, "--num_processes", "1", extra=["--model_arch", "decoder", "--grpo", "true"])

    results = json.loads((out / "results.json").read_text())
    rows = results["rows"]
    assert list(rows) == ["SFT (stage 1)", "SFT only (same compute)", RRHF, GRPO, "dataset target"]
    for row in rows.values():
        for key in (
            "percent_optimized",
            "speedup",
            "runtime_reduction",
            "percent_compiled",
            "percent_passed",
        ):
            assert key in row and f"{key}_ci" in row
        assert row["n_samples"] == 3
    assert rows["dataset target"]["percent_passed"] == 100  # the judge accepts the dataset's own programs
    assert rows[RRHF]["energy_kj"] > 0 and rows[GRPO]["energy_kj"] > 0
    # GRPO had the RRHF arm's wall time (it stops at the first update past it) and judged its own candidates.
    assert rows[GRPO]["train_time_s"] >= rows[RRHF]["train_time_s"]
    # Each update: 2 prompts x 3 completions (the tiny preset's 2 samples + the greedy decode RRHF has).
    assert rows[GRPO]["candidates_judged"] > 0 and rows[GRPO]["candidates_judged"] % 6 == 0
    grpo_curve = results["grpo_rl_curve"]
    assert grpo_curve[0]["step"] == 0 and grpo_curve[0] == {**results["rl_curve"][0], **grpo_curve[0]}
    assert all(0 <= h["pass_rate"] <= 1 for h in grpo_curve[1:] if "pass_rate" in h)
    assert grpo_curve[-1].get("eval_pass_rate") is not None  # the trained GRPO model, judged
    for key in ("paired_tests_rrhf_vs_grpo", "paired_tests_grpo_vs_sft_only", "paired_tests_grpo_vs_start"):
        assert 0 < results[key]["beats_p"] <= 1
    assert "RRHF vs GRPO, exact McNemar" in (out / "results.md").read_text()
    # Every target passed, so each model has a faster-than-target share over all 3 problems.
    assert all(0 <= rows[name]["beats_target_share"] <= 100 for name in rows if name != "dataset target")
    assert results["beats_target"][RRHF]["all"]["n"] == 3
    table = (out / "results.md").read_text()
    assert f"| {RRHF} | 3 |" in table and "McNemar" in table and "same wall-clock time" in table
    assert (
        "faster than target %" in table and "Wilcoxon signed-rank p" in table and "tests-only rows" in table
    )
    assert "## Per family" in table
    assert table.strip() in proc.stdout  # printed at the end
    # The run names what made it: this command line, and the commit of this checkout when it is one.
    made_by = results["provenance"]
    assert made_by["command"].startswith(str(SCRIPT)) and f"`{made_by['command']}`" in table
    assert made_by["commit"] == provenance()["commit"]

    data = results["data"]
    assert data["labelled"] + data["tests_only"] == data["train"] and data["rl_prompts"] == 4
    # Paired outcomes per problem, in the same order for every model.
    ids = [o["problem_id"] for o in results["outcomes"]["SFT only (same compute)"]]
    assert len(ids) == 3 and ids == [o["problem_id"] for o in results["outcomes"][RRHF]]
    assert {"pass_p", "opt_p", "beats_p", "beats_partial_p", "beats_only_a"} <= set(results["paired_tests"])
    assert {"pass_p", "beats_p", "beats_only_b"} <= set(results["paired_tests_vs_start"])
    assert "RRHF vs the SFT (stage 1) it started from, exact McNemar" in table
    assert results["speedup_endpoint"]["n"] == 3 and 0 < results["speedup_endpoint"]["wilcoxon_p"] <= 1

    for png in ("rl_curves.png", "sft_loss.png", "rl_arms.png"):
        with Image.open(out / png) as img:
            assert img.size[0] > 300 and img.size[1] > 200
    curve = results["rl_curve"]
    # Per update: the start model, then 4 prompts / batches of 2 = 2 updates, evaluated after the pass.
    assert [h["step"] for h in curve] == [0, 1, 2]
    assert {"eval_pass_rate", "eval_compile_rate", "eval_beats_target_rate"} <= set(curve[0])
    # Held-out points judged after training, with intervals that contain them.
    lo, hi = curve[0]["eval_pass_ci"]
    assert curve[0]["eval_n"] == 3 and lo <= curve[0]["eval_pass_rate"] <= hi
    assert {"pass_rate", "truncation_rate", "degenerate_rate", "groups_without_signal"} <= set(curve[1])
    # The candidates' moving average: the first point's is the point itself, the next averages the two.
    assert curve[1]["pass_rate_avg"] == curve[1]["pass_rate"]
    assert curve[2]["pass_rate_avg"] == pytest.approx((curve[1]["pass_rate"] + curve[2]["pass_rate"]) / 2)
    assert "eval_pass_rate" not in curve[1] and "eval_pass_rate" in curve[2]
    assert curve[1]["beats_target_rate"] is None  # tests-only prompts: no target to beat
    assert results["sft_loss"] and all(h["loss"] > 0 for h in results["sft_loss"])

    assert (out / "final_model" / "model.safetensors").is_file()
    model, tok = load_model_and_tokenizer(out / "final_model")
    assert not model.config.is_encoder_decoder and tok.pad_token_id is not None


@pytest.mark.slow
def test_train_pie_with_two_processes_writes_once_and_does_not_hang(tmp_path):
    """Two CPU processes (gloo): one results file, written by the main process, and both ranks finish."""
    out = tmp_path / "run"
    proc = _launch(
        out,
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--main_process_port",
        "29531",
        extra=["--use_cpu", "true", "--val_size", "2"],
    )
    assert proc.stdout.count("| model | n |") == 1  # the table is printed by one rank only
    results = json.loads((out / "results.json").read_text())
    assert results["rows"][RRHF]["n_samples"] == 3  # both ranks' halves gathered
    assert (out / "final_model" / "model.safetensors").is_file()


def test_rrhf_variant_takes_every_setting_of_the_compare_preset_but_its_own(monkeypatch):
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    import rrhf_variant

    monkeypatch.setattr(sys, "argv", ["rrhf_variant.py", "--rl_prompts", "288", "--rl_steps", "2"])
    variant, config = rrhf_variant._parse()
    assert (variant.rl_prompts, variant.rl_steps) == (288, 2)  # given on the command line
    compare = preset_defaults("compare")
    checked = 0
    for key, value in compare.items():
        holder = variant if hasattr(variant, key) else config if hasattr(config, key) else None
        if holder is None or key in ("output_dir", "rl_prompts", "rl_steps"):
            continue  # not a setting of the variant, or one it sets itself
        expected = [] if (key, value) == ("report_to", "none") else value  # TrainingArguments' parsed form
        assert getattr(holder, key) == expected, key
        checked += 1
    assert checked >= 10, checked


def _parse_train_pie(monkeypatch, tmp_path, *args):
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    import train_pie

    monkeypatch.setattr(sys, "argv", ["train_pie.py", *args, "--output_dir", str(tmp_path)])
    return train_pie, *train_pie.parse_args()


def test_tiny_preset_rl_prompts_are_tests_only_rows_disjoint_from_the_labelled_ones(monkeypatch, tmp_path):
    train_pie, script, config, _ = _parse_train_pie(monkeypatch, tmp_path, "--preset", "tiny")
    assert script.tests_only_fraction == 0.5
    labelled, rl_train, _, _, sizes = train_pie.held_out_splits(script, config)
    assert (
        len(labelled) == sizes["labelled"] > 0 and sizes["labelled"] + sizes["tests_only"] == sizes["train"]
    )
    assert len(rl_train) == min(script.rl_prompts, sizes["tests_only"]) == 6
    assert list(rl_train["target_code"]) == [None] * 6  # tests-only: the trainer never sees a target
    assert not set(rl_train["problem_id"]) & set(labelled["problem_id"])
    assert len(set(rl_train["prompt"])) == 6  # no prompt twice
    assert {"prompt", "input_code", "tests"} <= set(rl_train.column_names)
    assert all(t is not None for t in labelled["target_code"])  # SFT's rows keep theirs

    # Without the split: RL prompts come from all of train, with their targets, and SFT sees all of train.
    train_pie, script, config, _ = _parse_train_pie(
        monkeypatch, tmp_path, "--preset", "tiny", "--tests_only_fraction", "0"
    )
    labelled, rl_train, _, _, sizes = train_pie.held_out_splits(script, config)
    assert sizes["tests_only"] == 0 and len(labelled) == sizes["train"]
    assert all(t is not None for t in rl_train["target_code"])
    assert set(rl_train["problem_id"]) <= set(labelled["problem_id"])


def test_presets_split_compare_and_default_alike_and_schedule_about_four_held_out_points(
    monkeypatch, tmp_path
):
    _, script, config, _ = _parse_train_pie(monkeypatch, tmp_path, "--preset", "compare")
    assert (script.tests_only_fraction, script.rl_steps, script.rl_prompts) == (0.5, 1, 512)
    assert (config.num_random_samples, config.num_greedy_samples, config.generate_ahead) == (4, 1, True)
    # 512 prompts in batches of 8: 64 updates, evaluated every 16 (4 points besides step 0).
    assert rl_eval_schedule(config.per_device_train_batch_size, config.gradient_accumulation_steps, 512, 1, script.rl_eval_points, 1) == {
        "eval_strategy": "steps", "eval_steps": 16
    }  # fmt: skip
    assert (
        rl_eval_schedule(
            config.per_device_train_batch_size, config.gradient_accumulation_steps, 30 * 8, 1, 4, 1
        )["eval_steps"]
        == 8
    )  # 30 updates: 8, 16, 24, 30
    assert rl_eval_schedule(
        config.per_device_train_batch_size, config.gradient_accumulation_steps, 512, 2, None, 1
    ) == {"eval_strategy": "epoch"}
    # The recipes save checkpoints there instead, and judge them after training.
    assert rl_checkpoint_schedule(8, 1, 512, 1, 4, 1) == {
        "eval_strategy": "no", "save_strategy": "steps", "save_only_model": True, "save_steps": 16
    }  # fmt: skip
    assert rl_checkpoint_schedule(8, 1, 512, 2, None, 1) == {
        "eval_strategy": "no", "save_strategy": "epoch", "save_only_model": True
    }  # fmt: skip
    default = preset_defaults("default")
    compare = preset_defaults("compare")
    different = {k for k in compare if compare[k] != default.get(k)}
    assert different == {"output_dir", "n_per_family", "rl_prompts", "max_eval", "val_size", "rl_eval_points"}
    assert default["generation_batch_size"] == 16 and default["rl_prompts"] == 104
    with pytest.raises(ValueError, match="tests_only_fraction"):
        _parse_train_pie(monkeypatch, tmp_path, "--tests_only_fraction", "1")


def test_adapt_preset_trains_on_the_adaptation_half_from_tests_only(monkeypatch, tmp_path):
    pie = tiny_pie(tmp_path / "pie")
    train_pie, script, config, _ = _parse_train_pie(
        monkeypatch, tmp_path, "--preset", "adapt", "--pie_dir", str(pie), "--n_per_family", "3"
    )
    assert (script.dataset, script.tests_only_fraction, config.max_completion_length) == (
        "pie",
        0.0,
        512,
    )
    labelled, rl_train, val, test, sizes = train_pie.held_out_splits(script, config)
    assert sorted(rl_train["problem_id"]) == ["p00000", "p00005", "p00006"]  # the half's passing programs
    assert list(rl_train["target_code"]) == [None] * 3  # its targets never reach training
    assert sorted(test["problem_id"]) == ["p00001", "p00002"] and all(test["target_code"])
    assert set(val["problem_id"]) <= set(test["problem_id"])
    assert sizes["pie_adapt"] == {"pairs": 4, "problems": 3, "programs": 4, "passing_own_tests": 3,
                                  "left_out": {"wrong_answer": 1}}  # fmt: skip
    assert sizes["pie_eval"]["left_out"] == {"wrong_answer": 1}
    # SFT-only learns from the synthetic data: the bundled benchmark, no PIE program at all
    pie_programs = {*rl_train["input_code"], *test["input_code"]}
    assert len(labelled) > 0 and not set(labelled["input_code"]) & pie_programs
    assert train_pie.rl_arm_name(script, 3) == "SFT + RRHF (3 PIE adaptation programs, tests only, 1 pass)"
    with pytest.raises(ValueError, match="pie"):
        _parse_train_pie(monkeypatch, tmp_path, "--preset", "adapt", "--tests_only_fraction", "0.5")


@pytest.mark.slow
def test_adapt_preset_runs_end_to_end_on_a_tiny_pie(tmp_path):
    pie = tiny_pie(tmp_path / "pie")
    out = tmp_path / "run"
    model = create_pretrained("t5", "tiny", tmp_path / "t5-tiny", seed=0)
    args = ["--preset", "adapt", "--pie_dir", str(pie), "--model_name_or_path", str(model),
            "--families", "sum_formula,string_concat", "--n_per_family", "4", "--val_size", "1",
            "--per_device_train_batch_size", "2", "--max_completion_length", "48", "--max_prompt_length", "160",
            "--eval_num_beams", "2", "--num_random_samples", "1", "--execution_n_trials", "3",
            "--disable_tqdm", "true"]  # fmt: skip
    proc = _launch(out, args=args, accelerate=False)
    results = json.loads((out / "results.json").read_text())
    arm = "SFT + RRHF (3 PIE adaptation programs, tests only, 1 pass)"
    assert list(results["rows"]) == ["start model", "SFT only (same compute)", arm, "dataset target"]
    assert results["rows"]["dataset target"]["n_samples"] == 2
    assert sorted(o["problem_id"] for o in results["outcomes"][arm]) == ["p00001", "p00002"]
    table = (out / "results.md").read_text()
    assert "PIE's adaptation half, tests only" in table and "gave any ranking signal" in table
    assert "## Per family" not in table and table.strip() in proc.stdout


ABLATION = SCRIPT.parent / "rl_ablation.py"


@pytest.mark.slow
def test_rl_ablation_trains_each_lever_for_its_budget_and_pairs_it_with_the_start_and_a_reference(tmp_path):
    out = tmp_path / "ablation"
    args = [
        "--levers", "tune on faster only", "--rl_seconds", "1", "--n_per_family", "4", "--rl_prompts", "4",
        "--max_eval", "3", "--per_device_train_batch_size", "2", "--max_completion_length", "48",
        "--disable_tqdm", "true", "--reference", str(tmp_path / "reference.json"),
    ]  # fmt: skip
    reference = {"outcomes": {"SFT + RRHF (a committed arm)": []}}
    (tmp_path / "reference.json").write_text(json.dumps(reference))
    _launch(out, script=ABLATION, args=args, accelerate=False)
    result = json.loads((out / "rl_ablation.json").read_text())
    rows = {row["lever"]: row for row in result["rows"]}
    assert list(rows) == ["bundled checkpoint", "tune on faster only"]
    lever = rows["tune on faster only"]
    assert lever["overrides"] == {"tuning_min_reward": 2.0} and lever["updates"] >= 1  # the budget ends it
    assert lever["n"] == 3 and lever["vs_start"]["beats_p"] <= 1 and "vs_compare_defaults" not in lever
    assert (
        lever["vs_reference"]["beats_only_a"] == lever["vs_reference"]["beats_only_b"] == 0
    )  # no shared problem
    ids = [o["problem_id"] for o in result["outcomes"]["bundled checkpoint"]]
    assert ids == [o["problem_id"] for o in result["outcomes"]["tune on faster only"]]
    # A second run resumes: the trained lever is kept, judged again, not retrained.
    trained = (out / "tune-on-faster-only" / "lever.json").read_text()
    proc = _launch(out, script=ABLATION, args=[*args, "--max_eval", "1"], accelerate=False)
    assert (
        "updates in" not in proc.stdout
        and (out / "tune-on-faster-only" / "lever.json").read_text() == trained
    )


def test_rl_ablation_names_an_unknown_lever(monkeypatch):
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    import rl_ablation

    monkeypatch.setattr(sys, "argv", ["rl_ablation.py", "--levers", "compare defaults,more magic"])
    with pytest.raises(ValueError, match=r"unknown \['more magic'\]"):
        rl_ablation.parse_args()
    # The default reference is the committed compare run, found from the script wherever it runs from.
    arm, by_id = rl_ablation.reference_outcomes(str(rl_ablation.REFERENCE))
    assert "RRHF" in arm and len(by_id) == 507
    assert rl_ablation.reference_outcomes("") is None
    with pytest.raises(SystemExit, match=r"--reference nowhere\.json: not a `--preset compare` results JSON"):
        rl_ablation.reference_outcomes("nowhere.json")


def test_rl_ablation_lever_takes_its_prompts_and_passes_over_the_compare_settings(monkeypatch, tmp_path):
    from datasets import Dataset

    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    import rl_ablation

    monkeypatch.setattr(sys, "argv", ["rl_ablation.py", "--output_dir", str(tmp_path)])
    _, config = rl_ablation.parse_args()
    prompts = Dataset.from_dict({"prompt": [f"p{i}" for i in range(100)]})
    passes, chosen = rl_ablation.lever_settings("3 passes over 48 prompts", config, prompts)
    assert chosen["prompt"] == [f"p{i}" for i in range(48)] and passes.num_train_epochs == 3
    assert passes.learning_rate == config.learning_rate == 5e-5 and passes.output_dir.endswith(
        "3-passes-over-48-prompts"
    )
    imitation, chosen = rl_ablation.lever_settings("imitation only, learning rate x10", config, prompts)
    assert len(chosen) == 100 and imitation.num_train_epochs == 1
    assert (imitation.rank_loss_weight, imitation.learning_rate) == (0.0, 5e-4)
    assert config.rank_loss_weight == 1.0  # the compare settings themselves are left as they were
    levers = "imitation only,imitation only, learning rate x3,learning rate x3"
    names = rl_ablation.AblationArguments(levers=levers).lever_names()
    assert names == ["imitation only", "imitation only, learning rate x3", "learning rate x3"]


def test_grpo_preset_starts_both_rl_arms_from_the_bundled_causal_checkpoint_on_the_compare_problems(
    monkeypatch, tmp_path
):
    from perfrl_trl.models import BUNDLED_CAUSAL_CHECKPOINT

    _, script, config, model_args = _parse_train_pie(monkeypatch, tmp_path, "--preset", "grpo")
    assert script.grpo and model_args.model_name_or_path == str(BUNDLED_CAUSAL_CHECKPOINT)
    compare = preset_defaults("compare")
    assert (script.n_per_family, script.max_eval, script.tests_only_fraction) == (
        compare["n_per_family"], compare["max_eval"], compare["tests_only_fraction"],
    )  # fmt: skip
    assert config.num_random_samples + config.num_greedy_samples == 5 and script.rl_prompts == 128


@pytest.mark.parametrize(
    "flags, message",
    [
        ([], "--grpo needs a causal start model"),  # the tiny preset's T5
        (["--model_arch", "decoder", "--num_random_samples", "1", "--num_greedy_samples", "0"],
         "--grpo needs at least 2 completions per prompt"),
    ],
)  # fmt: skip
def test_grpo_settings_it_cannot_train_with_stop_the_run_before_any_arm_trains(tmp_path, flags, message):
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *TINY, "--grpo", "true", "--sft_steps", "0", *flags,
         "--output_dir", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode != 0 and message in proc.stderr
    assert not (tmp_path / "rrhf").exists()
