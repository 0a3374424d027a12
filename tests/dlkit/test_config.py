"""Config dataclasses become flags; the resolved config round-trips through JSON."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import pytest

from dlkit.config import ConfigError, build_parser, check_config, flag, load_config, parse_config, save_config


@dataclass
class Config:
    quick: bool = False
    lr: float = 0.1
    num_epochs: int = 10
    optimizer: Literal["sgd", "adam"] = "sgd"
    hidden_sizes: tuple[int, ...] = (64, 32)
    run_name: str | None = None
    amp: bool = field(default=True, metadata={"help": "bf16 autocast"})


def test_defaults_and_kebab_case_flags():
    cfg = parse_config(Config, ["--lr", "0.5", "--num-epochs", "3", "--no-amp", "--hidden-sizes", "8", "4"])
    assert cfg == Config(lr=0.5, num_epochs=3, amp=False, hidden_sizes=(8, 4))
    assert parse_config(Config, []) == Config()
    assert parse_config(Config, ["--run-name", "none"]).run_name is None


def test_quick_overrides_defaults_but_not_given_flags():
    overrides = {"num_epochs": 1, "lr": 0.01}
    assert parse_config(Config, ["--quick"], quick=overrides) == Config(quick=True, num_epochs=1, lr=0.01)
    cfg = parse_config(Config, ["--quick", "--num-epochs", "7"], quick=overrides)
    assert (cfg.num_epochs, cfg.lr) == (7, 0.01)
    assert parse_config(Config, [], quick=overrides) == Config()  # no --quick: overrides unused
    with pytest.raises(KeyError, match="does not have"):
        parse_config(Config, ["--quick"], quick={"epochs": 1})


def test_bad_values_are_clear_errors(capsys):
    with pytest.raises(SystemExit):
        parse_config(Config, ["--optimizer", "rmsprop"])
    assert "invalid choice" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_config(Config, ["--num-epochs", "three"])
    assert "invalid int value" in capsys.readouterr().err


def test_round_trip_through_json(tmp_path):
    cfg = parse_config(Config, ["--optimizer", "adam", "--hidden-sizes", "16"])
    path = save_config(cfg, tmp_path / "run" / "config.json")
    assert load_config(Config, path) == cfg
    path.write_text(path.read_text().replace('"lr"', '"learning_rate"'))
    with pytest.raises(ValueError, match="learning_rate"):
        load_config(Config, path)


def test_help_lists_every_field():
    text = build_parser(Config).format_help()
    for name in ("--lr", "--num-epochs", "--optimizer", "--hidden-sizes", "--run-name", "--amp", "--no-amp"):
        assert name in text


@dataclass
class Ranged:
    """Train a ranged thing."""

    quick: bool = False
    lr: float = 0.1
    batch_size: int = 32
    max_chars: int | None = None
    shift: float = flag(0.0, help="may be negative", min=-math.inf)
    hidden: int = flag(8, help="units per layer", min=2, max=64)
    mode: str = flag("fast", help="how to run", choices=("fast", "exact"))
    sizes: tuple[int, ...] = (4, 4)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--batch-size", "0"], "--batch-size must be >= 1, not 0"),
        (["--batch-size", "-1"], "--batch-size must be >= 1, not -1"),
        (["--lr", "0"], "--lr must be > 0, not 0"),
        (["--lr", "nan"], "--lr must be > 0, not nan"),
        (["--max-chars", "-5"], "--max-chars must be >= 1, not -5"),
        (["--hidden", "65"], "--hidden must be >= 2 and <= 64, not 65"),
        (["--mode", "slow"], "--mode must be one of fast, exact, not 'slow'"),
        (["--sizes", "4", "-4"], "--sizes must be >= 0, not -4"),  # no stated range: not negative
    ],
)
def test_values_out_of_range_stop_with_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_config(Ranged, argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_values_in_range_pass_and_none_means_unset():
    cfg = parse_config(Ranged, ["--shift", "-3", "--max-chars", "none", "--hidden", "64"])
    assert (cfg.shift, cfg.max_chars, cfg.hidden) == (-3.0, None, 64)
    with pytest.raises(ConfigError, match="--hidden"):
        check_config(Ranged(hidden=1))


def test_help_is_the_docstring_and_every_flag_says_its_range():
    text = build_parser(Ranged).format_help()
    assert "Train a ranged thing." in text and "Ranged(" not in text
    assert "learning rate (> 0; default: 0.1)" in " ".join(text.split())
    assert "units per layer (>= 2 and <= 64; default: 8)" in " ".join(text.split())
    assert "Config(" not in build_parser(Config).format_help()  # no docstring: no raw signature


def test_a_percent_sign_in_help_is_printed_not_formatted():
    @dataclass
    class Percent:
        frac: float = flag(0.1, help="keep 10% of the data", min=0, max=1)

    assert "keep 10% of the data" in build_parser(Percent).format_help()  # argparse raised ValueError
