"""Time to accuracy on a small CPU: Fashion-MNIST and CIFAR-10 (JPEG) with the best CPU recipe we have.

Goals on the course's 2-core machine (AMD EPYC, AVX512-BF16): Fashion-MNIST >= 93% test accuracy
within 5 minutes, CIFAR-10 (JPEG) >= 85% within 15 minutes. Run it on a quiet machine (it prints the
load average before and after: anything well above 0 means the times are not the machine's own)::

    python benchmarks/cpu_time_to_accuracy.py                       # both tasks, the recipes below
    python benchmarks/cpu_time_to_accuracy.py --task fashion_mnist --num-epochs 4
    python benchmarks/cpu_time_to_accuracy.py --task cifar10_jpeg --widths 48 96 192

The recipe is the fast path (projects/image_classifier/fast.py, airbench94's recipe) made cheaper for
a CPU: narrower layers (the first group runs at full resolution, so its width costs the most), fewer
epochs and smaller batches, bf16 autocast (the CPU has native bf16: 1.5x here) and channels_last. The
clock runs as in fast.py: whitening init, training and the final TTA evaluation; the per-epoch test
accuracy printed in each row is measured off the clock. Each row: epoch, elapsed training seconds,
test accuracy; the last row adds the TTA evaluation to the time. Measured: projects/image_classifier/README.md
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

from dlkit.device import autocast_dtype, cpu_name, seed_everything
from projects.image_classifier.data import load_splits
from projects.image_classifier.fast import FastConfig, make_model, to_device, train_fast

# The CPU recipes: airbench94's hyperparameters except where a line says otherwise.
RECIPES = {
    "fashion_mnist": FastConfig(
        dataset="fashion_mnist",
        widths=(32, 64, 128),  # airbench: 64, 256, 256
        num_epochs=8.0,
        batch_size=512,
        tta_translate=1,
    ),
    "cifar10_jpeg": FastConfig(
        dataset="cifar10_jpeg",
        widths=(48, 96, 192),
        num_epochs=8.0,
        batch_size=512,
        tta_translate=1,
    ),
}
GOALS = {"fashion_mnist": (0.93, 300.0), "cifar10_jpeg": (0.85, 900.0)}  # accuracy, seconds


def load_average() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"


def run(task: str, cfg: FastConfig) -> dict:
    splits = load_splits(cfg.dataset, train_subset=cfg.train_subset, test_subset=cfg.test_subset)
    data = to_device(splits, torch.device("cpu"))
    seed_everything(cfg.seed)
    model, net = make_model(cfg, data, torch.device("cpu"))
    print(f"\n{splits.dataset}: {len(data.y_train):,} train / {len(data.y_test):,} test images; {cfg}")
    print(f"load average before: {load_average()}")
    start_cpu = time.process_time()
    result = train_fast(cfg, data, model, net, verbose=True)  # a line per epoch as it ends
    cpu_seconds = time.process_time() - start_cpu
    goal_acc, goal_seconds = GOALS.get(task, (None, None))
    print(f"{'epoch':>5}  {'seconds':>8}  {'test_acc':>8}  {'img/s':>7}")
    previous = 0.0
    for row in result["epochs"]:
        rate = len(data.y_train) / max(row["seconds"] - previous, 1e-9)
        previous = row["seconds"]
        print(f"{row['epoch']:>5}  {row['seconds']:8.1f}  {row['test_acc']:8.4f}  {rate:7.0f}")
    print(f"{'TTA':>5}  {result['seconds']:8.1f}  {result['tta_acc']:8.4f}")
    if goal_acc is not None:
        met = result["tta_acc"] >= goal_acc and result["seconds"] <= goal_seconds
        print(f"goal {goal_acc:.0%} within {goal_seconds:.0f} s: {'met' if met else 'NOT met'}")
    print(f"load average after: {load_average()}; process CPU time {cpu_seconds:.0f} s")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=[*RECIPES, "both"], default="both")
    parser.add_argument("--num-epochs", type=float, default=None, help="override the recipe's epochs")
    parser.add_argument("--widths", type=int, nargs=3, default=None, help="override the recipe's widths")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--train-subset", type=int, default=None, help="for a smoke test")
    parser.add_argument("--test-subset", type=int, default=None, help="for a smoke test")
    parser.add_argument("--no-amp", action="store_true", help="float32 instead of bf16 autocast")
    args = parser.parse_args()
    print(
        f"{cpu_name()}, {os.cpu_count()} logical CPUs, torch {torch.__version__} with "
        f"{torch.get_num_threads()} threads (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}), "
        f"autocast_dtype(cpu) = {autocast_dtype(torch.device('cpu'))}"
    )
    for task in RECIPES if args.task == "both" else [args.task]:
        cfg = RECIPES[task]
        overrides = {
            "num_epochs": args.num_epochs,
            "widths": tuple(args.widths) if args.widths else None,
            "batch_size": args.batch_size,
            "train_subset": args.train_subset,
            "test_subset": args.test_subset,
            "amp": False if args.no_amp else None,
        }
        run(task, replace(cfg, **{k: v for k, v in overrides.items() if v is not None}))


if __name__ == "__main__":
    main()
