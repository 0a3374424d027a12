"""Does bf16 autocast pay on this CPU? Training-step throughput of an MLP and a small CNN, fp32 vs bf16.

dlkit.device.autocast_dtype turns bf16 autocast on for CPUs with native bf16 (AVX512-BF16 / AMX);
this script checks that choice on the machine it runs on. It prints the hardware and every number.

    python benchmarks/amp_cpu.py [--steps 30] [--batch-size 256]
"""

from __future__ import annotations

import argparse
import platform
import time
from contextlib import nullcontext

import torch
from torch import nn

from dlkit.device import autocast_dtype


def models() -> dict[str, tuple[nn.Module, tuple[int, ...]]]:
    mlp = nn.Sequential(
        nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 10)
    )
    cnn = nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 10),
    )  # fmt: skip
    return {"mlp": (mlp, (1, 28, 28)), "cnn": (cnn, (1, 28, 28))}


def steps_per_second(
    model: nn.Module, shape: tuple[int, ...], batch_size: int, steps: int, bf16: bool
) -> float:
    X, y = torch.randn(batch_size, *shape), torch.randint(0, 10, (batch_size,))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext()
    for i in range(steps + 5):
        if i == 5:  # warm-up steps are not timed
            start = time.perf_counter()
        with ctx:
            loss = nn.functional.cross_entropy(model(X), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()
    cpu = torch.device("cpu")
    print(
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, capability {torch.backends.cpu.get_cpu_capability()}, "
        f"autocast_dtype(cpu) = {autocast_dtype(cpu)}"
    )
    for name, (model, shape) in models().items():
        fp32 = steps_per_second(model, shape, args.batch_size, args.steps, bf16=False)
        bf16 = steps_per_second(model, shape, args.batch_size, args.steps, bf16=True)
        print(
            f"{name}: fp32 {fp32 * args.batch_size:,.0f} samples/s, "
            f"bf16 autocast {bf16 * args.batch_size:,.0f} samples/s "
            f"({bf16 / fp32:.2f}x), batch {args.batch_size}, {args.steps} steps"
        )


if __name__ == "__main__":
    main()
