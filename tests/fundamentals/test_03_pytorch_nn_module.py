"""Lesson 03 (nn.Module) in quick mode: every claim it makes about modules is checked by what it measured."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import outcome, run_lesson

from dlkit.lesson import outcome_problems

LESSON = "fundamentals/03_pytorch_nn_module.py"


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return run_lesson(LESSON, tmp_path=tmp_path_factory.mktemp("lesson03"))


def test_parameters_and_state_dict(result):
    assert outcome(result, "num_params") == 64 * 128 + 128 + 128 * 10 + 10  # default hidden = 128
    assert outcome(result, "state_dict_keys") == 4
    assert outcome(result, "load_max_abs_diff") == 0.0  # weights_only load: bit-for-bit the same model
    assert outcome(result, "sequential_max_abs_diff") <= 1e-6


def test_buffers_are_saved_but_not_trained(result):
    assert outcome(result, "custom_layer_param_tensors") == 1  # gain
    assert outcome(result, "custom_layer_state_dict_keys") == 3  # gain, mean, std
    assert outcome(result, "gain_changed") > 1e-3  # the optimiser moved the parameter...
    assert outcome(result, "buffer_mean_changed") == 0.0  # ...and left the buffer alone


def test_dropout_train_vs_eval(result):
    p = 0.3  # the lesson's default dropout_p
    assert abs(outcome(result, "dropout_drop_fraction") - p) < 0.02
    assert outcome(result, "dropout_kept_scale") == pytest.approx(1 / (1 - p), abs=1e-4)
    assert outcome(result, "dropout_train_passes_differ") > 0.2  # two passes drop different units
    assert outcome(result, "dropout_eval_max_abs_diff") == 0.0


def test_batchnorm_train_vs_eval(result):
    assert outcome(result, "bn_train_mean_abs_max") < 1e-3
    assert outcome(result, "bn_train_std_mean") == pytest.approx(1.0, abs=0.02)
    assert outcome(result, "bn_running_mean_after_1") == pytest.approx(0.5, abs=0.1)  # momentum 0.1 * 5
    assert outcome(result, "bn_running_mean_after_100") == pytest.approx(5.0, abs=0.3)
    assert outcome(result, "bn_eval_mean_after_1") > 2.5  # stale running stats: far from centred
    assert outcome(result, "bn_eval_vs_train_mean_abs_diff") < 0.2
    assert outcome(result, "bn_eval_single_sample_ok") == 1.0
    assert outcome(result, "bn_train_batch1_raises") == 1.0


def test_training_and_figures(result):
    assert outcome(result, "test_acc") >= 0.85
    names = {Path(f).name for f in result["figures"]}
    assert {"loss_curves.png", "dropout_batchnorm_modes.png"} <= names
    assert all(o["passed"] for o in result["outcomes"].values())
    assert outcome_problems(result) == []  # every range could fail
    assert "# exercises: 0 passing, 0 failing, 3 not started" in result["stdout"]  # the stubs, as shipped
