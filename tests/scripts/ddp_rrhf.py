"""Run by tests/test_distributed.py under `accelerate launch --multi_gpu --num_processes 2` on CPU (gloo)."""

import gc
import json
import sys

import torch.distributed as dist
from datasets import Dataset

from perfrl_trl.trainer import RRHFConfig, RRHFTrainer

model_dir, out_dir, max_steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
resume = sys.argv[4] if len(sys.argv) > 4 else None
slow = "n = int(input())\ns = 0\nfor i in range(n + 1):\n    s += i\nprint(s)\n"
rows = [
    {
        "prompt": f"Write faster version:\n{slow}# {n}\n",
        "input_code": slow,
        "target_code": "n = int(input())\nprint(n * (n + 1) // 2)\n",
        "tests": [{"input": f"{n}\n", "output": f"{n * (n + 1) // 2}\n"}],
    }
    for n in (10, 2000, 300000, 50, 7, 99, 1234, 4321)
]
data = Dataset.from_list(rows)
args = RRHFConfig(
    output_dir=out_dir,
    use_cpu=True,
    max_steps=max_steps,
    per_device_train_batch_size=2,
    max_completion_length=12,
    max_prompt_length=64,
    logging_steps=1,
    report_to=[],
    save_strategy="steps",
    save_steps=1,
    disable_tqdm=True,
    eval_num_beams=2,
    execution_n_trials=3,
    execution_workers=1,
    ddp_backend="gloo",
)


def main() -> None:
    trainer = RRHFTrainer(model_dir, args=args, train_dataset=data, eval_dataset=data.select(range(4)))
    trainer.train(resume_from_checkpoint=resume)
    metrics = trainer.evaluate()
    if trainer.is_world_process_zero():
        result = {
            "world_size": trainer.args.world_size,
            "step": trainer.state.global_step,
            "eval_n_samples": metrics["eval_n_samples"],
        }
        print("RESULT " + json.dumps(result))


main()
# The trainer (and the DDP wrapper holding the process group) went with main()'s frame, while the interpreter
# is whole: a module-level trainer lived into interpreter teardown, where freeing the group's gloo threads
# sometimes aborted the process ("terminate called without an active exception") after RESULT was printed.
gc.collect()
if dist.is_initialized():
    dist.destroy_process_group()
