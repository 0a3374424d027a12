"""Save a ~300 MB checkpoint to PATH (the test SIGKILLs this process while it writes).

python _train_save_big.py PATH
"""

from __future__ import annotations

import sys

import torch
from torch import nn

from dlkit.checkpoint import save_checkpoint

if __name__ == "__main__":
    save_checkpoint(sys.argv[1], model=nn.Linear(4, 2), epoch=99, big=torch.ones(75_000_000))  # 300 MB
