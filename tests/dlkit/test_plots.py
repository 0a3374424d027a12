"""plot_bars and plot_curves draw the numbers they are given, where they are given."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest

from dlkit.plots import plot_bars, plot_curves, save_figure


def test_plot_bars_draws_one_labelled_bar_per_number(tmp_path):
    fig = plot_bars({"hr": 0.63, "ndcg": 0.19, "coverage": 0.05}, title="val", ylabel="at K = 10")
    ax = fig.axes[0]
    assert [p.get_height() for p in ax.patches] == pytest.approx([0.63, 0.19, 0.05])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["hr", "ndcg", "coverage"]
    assert [t.get_text() for t in ax.texts] == ["0.63", "0.19", "0.05"]  # each bar's value on it
    assert save_figure(fig, tmp_path / "bars.png").stat().st_size > 1000
    assert all(t.get_rotation() == 0 for t in ax.get_xticklabels())  # short names stay level
    long = plot_bars({"ease lambda 300": 0.19, "hybrid weight 0.5": 0.21}).axes[0]
    assert all(t.get_rotation() == 30 for t in long.get_xticklabels())  # long ones are slanted


def test_plot_curves_puts_each_value_at_its_step():
    fig = plot_curves({"val_rmse": [0.9, 0.87, 0.86]}, steps=[20, 30, 40])
    line = fig.axes[0].lines[0]
    assert list(line.get_xdata()) == [20, 30, 40] and list(line.get_ydata()) == [0.9, 0.87, 0.86]
    assert list(plot_curves({"loss": [3.0, 2.0]}).axes[0].lines[0].get_xdata()) == [1, 2]  # default 1, 2, ...
