"""Time to accuracy on a small CPU: Fashion-MNIST and CIFAR-10 (JPEG) with the best CPU recipes we have.

Goals on a 2-core CPU: Fashion-MNIST >= 93% test accuracy within 5 minutes, CIFAR-10 (JPEG) >= 85%
within 15 minutes, on a CPU with native bf16 (AVX512-BF16 or AMX) and on one without (AVX2 only:
most laptops), where bf16 is emulated and every matmul runs in float32. The recipe is chosen by what
the hardware runs fast (``dlkit.device.autocast_dtype``); ``DLKIT_CPU_BF16=0`` makes a bf16 CPU run
the float32 recipe, as an AVX2 machine would. Run it on a quiet machine (it prints the load average
before and after: anything well above 0 means the times are not the machine's own)::

    python benchmarks/cpu_time_to_accuracy.py --threads 2                       # both tasks
    DLKIT_CPU_BF16=0 python benchmarks/cpu_time_to_accuracy.py --task fashion_mnist --threads 2
    python benchmarks/cpu_time_to_accuracy.py --task cifar10_jpeg --widths 48 96 192

The recipe is the fast path (projects/image_classifier/fast.py, airbench94's recipe on
dlkit.train.train_loop) made cheaper for a CPU: narrower layers (the first group runs at full
resolution, so its width costs the most), fewer epochs and smaller batches, bf16 autocast where the
CPU runs it natively, channels_last. The float32 recipes are narrower again: float32 convolutions ran
1.6x slower than bf16 ones on the course's machine. The clock runs as in fast.py: whitening init,
training and the final TTA evaluation; the per-epoch test accuracy in each row is measured off the
clock and picks nothing. Measured: projects/image_classifier/README.md
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for projects.*

from dlkit.device import autocast_dtype, cpu_name, describe_device, seed_everything
from projects.image_classifier.fast import FastConfig, load_fast_data, make_model, train_fast

# The CPU recipes: airbench94's hyperparameters except where a line says otherwise; per task, one for
# CPUs with native bf16 and one for CPUs that run float32 (bf16 emulated there is 10-30x slower).
RECIPES = {
    ("fashion_mnist", "bf16"): FastConfig(dataset="fashion_mnist", widths=(32, 64, 128), num_epochs=8.0),
    ("fashion_mnist", "float32"): FastConfig(dataset="fashion_mnist", widths=(24, 48, 96), num_epochs=8.0),
    ("cifar10_jpeg", "bf16"): FastConfig(dataset="cifar10_jpeg", widths=(48, 96, 192), num_epochs=8.0),
    ("cifar10_jpeg", "float32"): FastConfig(dataset="cifar10_jpeg", widths=(32, 64, 128), num_epochs=8.0),
}
RECIPES = {key: replace(cfg, batch_size=512) for key, cfg in RECIPES.items()}  # airbench: 1024
TASKS = ("fashion_mnist", "cifar10_jpeg")
GOALS = {"fashion_mnist": (0.93, 300.0), "cifar10_jpeg": (0.85, 900.0)}  # accuracy, seconds


def load_average() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"


def hardware_kind() -> str:
    """ "bf16" where the CPU runs bf16 natively (or DLKIT_CPU_BF16=1 says so), else "float32"."""
    return "bf16" if autocast_dtype(torch.device("cpu")) == torch.bfloat16 else "float32"


def run(task: str, cfg: FastConfig) -> dict:
    device = torch.device("cpu")
    splits, data = load_fast_data(cfg, device)
    seed_everything(cfg.seed)
    model, net = make_model(cfg, data, device)
    print(f"\n{splits.dataset}: {splits.sizes()}; {cfg}")
    print(f"load average before: {load_average()}", flush=True)
    start_cpu = time.process_time()
    result = train_fast(cfg, data, model, net, verbose=True)  # a line per epoch as it ends
    cpu_seconds = time.process_time() - start_cpu
    steps_per_epoch = len(data.y_train) // cfg.batch_size
    print(f"{'epoch':>5}  {'seconds':>8}  {'test_acc':>8}  {'img/s':>7}")
    previous = previous_step = 0.0
    for row in result["epochs"]:
        rate = (row["step"] - previous_step) * cfg.batch_size / max(row["seconds"] - previous, 1e-9)
        previous, previous_step = row["seconds"], row["step"]
        epochs = row["step"] / steps_per_epoch
        print(f"{epochs:>5.1f}  {row['seconds']:8.1f}  {row.get('test_acc', float('nan')):8.4f}  {rate:7.0f}")
    print(f"{'TTA':>5}  {result['seconds']:8.1f}  {result['tta_acc']:8.4f}")
    goal_acc, goal_seconds = GOALS.get(task, (None, None))
    if goal_acc is not None:
        met = result["tta_acc"] >= goal_acc and result["seconds"] <= goal_seconds
        print(f"goal {goal_acc:.0%} within {goal_seconds:.0f} s: {'met' if met else 'NOT met'}")
    print(f"load average after: {load_average()}; process CPU time {cpu_seconds:.0f} s")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=[*TASKS, "both"], default="both")
    parser.add_argument("--recipe", choices=["auto", "bf16", "float32"], default="auto",
                        help="auto: the one for this CPU (bf16 where it runs natively)")  # fmt: skip
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--num-epochs", type=float, default=None, help="override the recipe's epochs")
    parser.add_argument("--widths", type=int, nargs=3, default=None, help="override the recipe's widths")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--train-subset", type=int, default=None, help="for a smoke test")
    parser.add_argument("--test-subset", type=int, default=None, help="for a smoke test")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    kind = hardware_kind() if args.recipe == "auto" else args.recipe
    cpu = torch.device("cpu")
    print(
        f"{cpu_name()}, {os.cpu_count()} logical CPUs, torch {torch.__version__}, {describe_device(cpu)} "
        f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
        f"DLKIT_CPU_BF16={os.environ.get('DLKIT_CPU_BF16', 'unset')}); "
        f"autocast_dtype(cpu) = {autocast_dtype(cpu)}; the {kind} recipes"
    )
    for task in TASKS if args.task == "both" else [args.task]:
        overrides = {
            "num_epochs": args.num_epochs,
            "widths": tuple(args.widths) if args.widths else None,
            "batch_size": args.batch_size,
            "seed": args.seed,
            "train_subset": args.train_subset,
            "test_subset": args.test_subset,
        }
        run(task, replace(RECIPES[task, kind], **{k: v for k, v in overrides.items() if v is not None}))


if __name__ == "__main__":
    main()
