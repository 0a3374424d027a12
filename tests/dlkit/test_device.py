"""Devices, the dtypes that pay on them, the no-native-bf16 switch, and errors a person can act on."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from dlkit.device import (
    DeviceNotAvailableError,
    autocast,
    autocast_dtype,
    cpu_has_native_bf16,
    fast_dtype,
    get_device,
    resolve_amp_dtype,
)
from dlkit.errors import run_cli

CPU = torch.device("cpu")


def test_the_switch_decides_what_the_cpu_runs_fast(monkeypatch):
    monkeypatch.setenv("DLKIT_CPU_BF16", "0")
    assert not cpu_has_native_bf16()
    assert autocast_dtype(CPU) is None and fast_dtype(CPU) == torch.float32
    assert resolve_amp_dtype(None, CPU) is None
    assert resolve_amp_dtype(True, CPU) == torch.bfloat16  # asked for: bf16 even where it is slow
    monkeypatch.setenv("DLKIT_CPU_BF16", "1")
    assert cpu_has_native_bf16()
    assert autocast_dtype(CPU) == torch.bfloat16 and fast_dtype(CPU) == torch.bfloat16
    assert resolve_amp_dtype(False, CPU) is None


def test_autocast_helper_is_a_no_op_without_a_dtype():
    x = torch.randn(4, 4)
    with autocast(CPU, None):
        assert (x @ x).dtype == torch.float32
    with autocast(CPU, torch.bfloat16):
        assert (x @ x).dtype == torch.bfloat16


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
@pytest.mark.parametrize("name", ["cuda", "cuda:1", "gpu"])
def test_a_missing_gpu_is_a_user_error_that_names_what_exists(name):
    with pytest.raises(DeviceNotAvailableError, match="available devices are cpu"):
        get_device(name)


def test_a_device_name_that_is_not_one_is_refused():
    with pytest.raises(DeviceNotAvailableError, match="not a device name"):
        get_device("tpu0")


def test_user_errors_print_one_line_and_exit_non_zero(capsys, monkeypatch):
    monkeypatch.delenv("DLKIT_DEBUG", raising=False)

    def main() -> None:
        get_device("cuda:7")

    if torch.cuda.device_count() > 7:
        pytest.skip("this machine has 8 GPUs")
    assert run_cli(main) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: --device cuda:7 was asked for") and "Traceback" not in err
    monkeypatch.setenv("DLKIT_DEBUG", "1")
    with pytest.raises(DeviceNotAvailableError):
        run_cli(main)


def test_an_uncaught_user_error_in_a_script_prints_no_traceback(tmp_path):
    script = tmp_path / "lesson.py"
    script.write_text(
        "from dlkit.errors import install_excepthook, UserError\n"
        "install_excepthook()\n"
        "raise UserError('dataset missing: run with --quick')\n"
    )
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip() == "error: dataset missing: run with --quick"
