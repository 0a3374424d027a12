"""Config dataclasses become flags; the resolved config round-trips through JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from dlkit.config import build_parser, load_config, parse_config, save_config


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
    for flag in ("--lr", "--num-epochs", "--optimizer", "--hidden-sizes", "--run-name", "--amp", "--no-amp"):
        assert flag in text
