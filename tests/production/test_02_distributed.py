"""Production 02 (distributed training) in quick mode: two CPU processes with Gloo under torchrun.

DDP, DDP with ``no_sync`` and FSDP give the one-process loss curve, accumulation does too (and not
without dividing the losses), FSDP keeps half the state per process, and a checkpoint saved by two
processes resumes in one. The lesson's own helpers are checked against what they stand for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from conftest import ROOT, load_definitions, run_lesson

from dlkit.lesson import outcome_problems

LESSON = "production/02_distributed.py"
OUTCOMES = {
    "learned_loss_ratio", "accumulation_loss_gap", "unscaled_accumulation_loss_gap", "ddp_loss_gap",
    "no_sync_loss_gap", "fsdp_loss_gap", "fsdp_state_ratio", "resharded_resume_loss_gap", "checkpoint_files",
}  # fmt: skip


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp_path = tmp_path_factory.mktemp("production02")
    data = run_lesson(LESSON, tmp_path=tmp_path)
    data["run_dir"] = tmp_path / "runs" / "production" / "02_distributed"
    return data


@pytest.fixture(scope="module")
def lesson():
    return load_definitions(ROOT / LESSON)


def test_records_what_it_teaches_with_ranges_that_can_fail(result):
    assert set(result["outcomes"]) == OUTCOMES
    assert all(o["passed"] for o in result["outcomes"].values())
    assert outcome_problems(result) == []
    for kind in ("ddp", "no_sync", "fsdp", "accumulation", "resharded_resume"):
        assert result["outcomes"][f"{kind}_loss_gap"]["value"] < 1e-5
    assert result["outcomes"]["unscaled_accumulation_loss_gap"]["value"] > 1e-3  # the bug shows


def test_both_processes_ran_and_wrote_their_shards(result):
    job = result["run_dir"] / "job"
    assert (job / "rank0.json").is_file() and (job / "rank1.json").is_file()
    checkpoint = next(job.glob("checkpoint_step*"))
    assert {p.name for p in checkpoint.iterdir()} == {".metadata", "__0_0.distcp", "__1_0.distcp"}
    assert {Path(f).name for f in result["figures"]} == {"loss_curves.png"}
    assert "2 CPU processes with Gloo" in result["stdout"]


def test_accumulated_micro_batches_give_the_whole_batch_gradient(lesson):
    """``train`` with micro-batches, one process, equals one step on the whole batch (float64)."""
    torch.manual_seed(0)
    X, y = torch.randn(16, 5, dtype=torch.float64), torch.randint(0, 10, (16,))
    models = [lesson.make_model(5, 8, 2, 10, seed=3).double() for _ in range(2)]
    for model, micro in zip(models, (1, 4), strict=True):
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        lesson.train(model, optimizer, X, y, steps=range(1), batch=16, micro=micro)
    for a, b in zip(models[0].parameters(), models[1].parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    oracle = lesson.make_model(5, 8, 2, 10, seed=3).double()
    F.cross_entropy(oracle(X), y).backward()  # the step by hand: w - lr * grad
    first = next(oracle.parameters())
    torch.testing.assert_close(next(models[0].parameters()), first.detach() - 0.1 * first.grad)


def test_memory_arithmetic(lesson):
    assert lesson.model_state_gib(7e9, 8, "ddp") == pytest.approx(7e9 * 16 / 2**30)
    assert lesson.model_state_gib(7e9, 8, "fsdp") == pytest.approx(7e9 * 2 / 2**30)
    command = lesson.launch_command(2, 8, "node0:29500")
    assert "--nnodes 2" in command and "--nproc_per_node 8" in command and "node0:29500" in command
