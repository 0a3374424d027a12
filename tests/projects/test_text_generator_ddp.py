"""The text generator trains under torchrun: 2 CPU processes (gloo), each drawing its own windows.

    python -m torch.distributed.run --standalone --nproc_per_node 2 test_text_generator_ddp.py OUT -- FLAGS

run as a script (what the test does), trains with ``train.main(FLAGS)`` in every process and writes
OUT/rank<R>.json: the first windows the process drew and the metrics it ended with.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.slow,  # three processes start torch: 15-30 s on 2 busy cores
    pytest.mark.skipif(sys.platform == "win32", reason="needs torch.distributed with gloo on Linux or macOS"),
]


def test_two_processes_train_together_on_windows_of_their_own(tmp_path: Path) -> None:
    import torch

    if not torch.distributed.is_available():
        pytest.skip("this torch has no torch.distributed")
    out, runs = tmp_path / "out", tmp_path / "runs"
    out.mkdir()
    flags = ["--quick", "--device", "cpu", "--runs-dir", str(runs), "--run-name", "ddp"]
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DLKIT_PROGRESS": "0"}
    proc = subprocess.run(
        [*launch, __file__, str(out), *flags], env=env, capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    windows = [torch.tensor(r["windows"]) for r in ranks]
    assert windows[0].shape == windows[1].shape == (3, 8, 32)  # 8 of the global batch of 16 each
    assert not torch.equal(windows[0], windows[1])  # each process draws windows of its own
    assert ranks[0]["metrics"]["val_loss"] == ranks[1]["metrics"]["val_loss"]  # the same weights
    info = json.loads((runs / "ddp" / "model_info.json").read_text())
    assert info["metrics"]["val_loss_whole_split"] < ranks[0]["log_vocab"] - 0.3  # it learned
    steps = [line.split(",")[0] for line in (runs / "ddp" / "metrics.csv").read_text().splitlines()[1:]]
    assert steps == ["10", "20", "30"]  # written once, by process 0
    assert proc.stdout.count("step 30/30") == 1  # only process 0 prints


def _run(out: Path, argv: list[str]) -> None:
    """In each process under torchrun: train, recording the first three batches of windows drawn."""
    import math

    sys.path.insert(0, str(ROOT))
    from projects.text_generator import data, train

    drawn: list[list[list[int]]] = []
    draw = data.Windows.__next__

    def recording(self: data.Windows):  # noqa: ANN202
        batch = draw(self)
        if len(drawn) < 3:
            drawn.append(batch[0].tolist())
        return batch

    data.Windows.__next__ = recording  # type: ignore[method-assign]
    info = train.main(argv)
    rank = os.environ.get("RANK", "0")
    log_vocab = math.log(info["model_config"]["vocab_size"])
    result = {"windows": drawn, "metrics": info["metrics"], "log_vocab": log_vocab}
    (out / f"rank{rank}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    _run(Path(sys.argv[1]), sys.argv[2:])
