"""Fit a small MLP with dropout, Adam and StepLR for 4 epochs, with a checkpoint after each epoch.

    python _train_resume.py RUN_DIR [--kill-after N] [--resume]

``--kill-after N`` SIGKILLs this process from a callback after epoch N (as a power cut would);
``--resume`` continues from RUN_DIR/ckpt.pt. The history is written to RUN_DIR/history.json.
"""

from __future__ import annotations

import argparse
import os
import signal

import torch
from _train_setup import easy_classification, mlp, write_json
from torch import nn

from dlkit.device import seed_everything
from dlkit.train import fit, make_loader


def run(run_dir: str, kill_after: int | None = None, resume: bool = False) -> list[dict[str, float]]:
    """The run, also called in-process by the test for the uninterrupted reference."""
    seed_everything(0)
    train, val = easy_classification(n=384)
    model = mlp(dropout=0.2)  # dropout draws from the torch RNG: the resumed run must restore it
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)

    def kill(epoch: int, row: dict[str, float]) -> None:
        if epoch == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    history = fit(
        model,
        optimizer,
        make_loader(train, 32, shuffle=True),
        make_loader(val, 64, shuffle=False),
        loss_fn=nn.CrossEntropyLoss(),
        num_epochs=4,
        device="cpu",
        scheduler=scheduler,
        early_stopping_patience=10,
        run_dir=run_dir,
        checkpoint_path=os.path.join(run_dir, "ckpt.pt"),
        resume=resume,
        config={"lr": 1e-2, "hidden": [32]},
        callbacks=[kill],
    )
    write_json(os.path.join(run_dir, "history.json"), history.rows)
    return history.rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir")
    parser.add_argument("--kill-after", type=int, default=None)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)  # as in the test process: the same arithmetic, bit for bit
    run(args.run_dir, args.kill_after, args.resume)


if __name__ == "__main__":
    main()
