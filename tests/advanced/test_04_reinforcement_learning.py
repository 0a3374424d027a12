"""Lesson advanced/04 (reinforcement learning): quick mode's outcomes, and its tabular pieces by hand.

Quick mode learns FrozenLake for 3,000 episodes and trains DQN and Double DQN on CartPole for 4,000
steps each (one seed): enough to beat a random policy by a wide margin, which a broken agent does
not. The replay buffer, the TD targets and the DQN update are tested in tests/dlkit/test_rl.py.
"""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import ROOT, load_definitions, outcome, run_lesson

LESSON = "advanced/04_reinforcement_learning.py"
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("gymnasium") is None,
    reason='Gymnasium is the "rl" extra: pip install -e ".[rl]"',
)
CAN_RENDER = all(importlib.util.find_spec(m) is not None for m in ("pygame", "imageio"))


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp_path = tmp_path_factory.mktemp("rl")
    data = run_lesson(LESSON, tmp_path=tmp_path)
    data["run_dir"] = tmp_path / "runs" / "advanced" / "04_reinforcement_learning"
    return data


@pytest.fixture(scope="module")
def lesson():
    return load_definitions(ROOT / LESSON)


def test_seeding_repeats_episodes_and_a_time_limit_truncates(result):
    assert outcome(result, "seeded_episodes_repeat") == 1.0
    assert outcome(result, "step_limit_truncates") == 1.0
    assert "5 steps, terminated=False, truncated=True" in result["stdout"]


def test_tabular_q_learning_beats_random_and_nears_the_optimal_policy(result):
    assert outcome(result, "bellman_hand_error") <= 1e-12
    random_success = result["outcomes"]["q_learning_success"]["chance"]
    assert random_success < 0.05  # a random walk on slippery ice almost never reaches the goal
    assert outcome(result, "q_learning_success") >= 0.4
    assert 0.6 <= outcome(result, "optimal_success") <= 0.88  # value iteration's policy: about 0.74


def test_dqn_pieces_by_hand(result):
    assert outcome(result, "buffer_keeps_newest") == 1.0
    assert outcome(result, "td_targets_hand_error") <= 1e-6
    assert outcome(result, "hand_update_vs_dqn_update_diff") <= 1e-7


def test_quick_dqn_beats_a_random_policy_by_a_margin(result):
    random_return = result["outcomes"]["dqn_final_return"]["chance"]
    assert 15 < random_return < 35  # CartPole's random policy: about 22 steps
    assert outcome(result, "dqn_final_return") >= max(50, 2 * random_return)
    assert outcome(result, "double_dqn_final_return") >= max(50, 2 * random_return)
    assert "dqn_seeds_solved_share" not in result["outcomes"]  # the 5-seed goal is full mode's


def test_each_evaluation_and_each_run_is_written_as_csv(result):
    with (result["run_dir"] / "cartpole_evaluations.csv").open(newline="") as f:
        curves = list(csv.DictReader(f))
    with (result["run_dir"] / "cartpole_seeds.csv").open(newline="") as f:
        seeds = list(csv.DictReader(f))
    variants = ("DQN", "Double DQN")
    # quick mode: one seed of each, 4,000 steps, an evaluation every 1,000
    assert [(r["variant"], int(r["step"])) for r in curves] == [
        (v, s) for v in variants for s in range(1000, 4001, 1000)
    ]
    assert [(r["variant"], int(r["seed"])) for r in seeds] == [(v, 0) for v in variants]
    assert float(seeds[0]["final_return"]) == pytest.approx(outcome(result, "dqn_final_return"))
    assert float(seeds[1]["final_return"]) == float(curves[-1]["greedy_return"])
    assert all(
        float(r["train_cpu_s"]) > 0 and float(r["best_return"]) >= float(r["final_return"]) for r in seeds
    )


def test_figures_gif_and_quick_mode(result):
    assert result["quick"] and result["finished"]
    assert "nothing to download" in result["data"]["environments"]
    assert {Path(f).name for f in result["figures"]} == {"frozenlake_values.png", "cartpole_curves.png"}
    gif = result["run_dir"] / "cartpole_agent.gif"
    if CAN_RENDER:
        import imageio.v3 as iio

        assert iio.improps(gif).shape[0] >= 10  # frames of the trained agent's episode
    else:
        assert "no GIF" in result["stdout"] and not gif.exists()


def test_bellman_update_by_hand(lesson):
    Q = np.zeros((3, 2))
    Q[1] = [0.5, 2.0]
    lesson.bellman_update(Q, 0, 1, r=1.0, s_next=1, terminated=False, alpha=0.25, gamma=0.5)
    assert Q[0, 1] == pytest.approx(0.25 * (1.0 + 0.5 * 2.0))  # 0.5
    Q[2] = [100.0, 100.0]  # a terminal state's row must not leak into the target
    lesson.bellman_update(Q, 0, 0, r=-1.0, s_next=2, terminated=True, alpha=1.0, gamma=0.9)
    assert Q[0, 0] == -1.0
    Q[0, 1] = 3.0  # alpha = 0.5 moves half-way from 3 to the target 1 + 0.5 * 2
    lesson.bellman_update(Q, 0, 1, r=1.0, s_next=1, terminated=False, alpha=0.5, gamma=0.5)
    assert Q[0, 1] == pytest.approx(2.5)


def test_value_iteration_on_a_hand_worked_chain(lesson):
    # State 0: action 0 stays (reward 0), action 1 ends the episode with reward 1; state 1 is terminal.
    # Q*(0, 1) = 1 and Q*(0, 0) = 0 + 0.9 * V*(0) = 0.9.
    P = {
        0: {0: [(1.0, 0, 0.0, False)], 1: [(1.0, 1, 1.0, True)]},
        1: {a: [(1.0, 1, 0.0, True)] for a in (0, 1)},
    }
    assert np.allclose(lesson.value_iteration(P, 2, 2, gamma=0.9), [[0.9, 1.0], [0.0, 0.0]], atol=1e-9)
    # A slippery action 1: half the time it ends with reward 1, else it stays. Q(0, 1) = 0.5 + 0.45 V(0),
    # and V(0) = Q(0, 1) (it beats staying), so Q(0, 1) = 0.5 / 0.55.
    P[0][1] = [(0.5, 1, 1.0, True), (0.5, 0, 0.0, False)]
    Q = lesson.value_iteration(P, 2, 2, gamma=0.9)
    assert Q[0, 1] == pytest.approx(0.5 / 0.55, abs=1e-9) and Q[0, 0] == pytest.approx(
        0.9 * 0.5 / 0.55, abs=1e-9
    )


def test_q_learning_learns_a_deterministic_lake_as_value_iteration_does(lesson):
    import gymnasium as gym

    env = gym.make("FrozenLake-v1", map_name="4x4", is_slippery=False)
    Q, rewards = lesson.q_learning(env, 400, alpha=0.5, gamma=0.9, seed=0)
    Q_star = lesson.value_iteration(env.unwrapped.P, 16, 4, gamma=0.9)
    assert rewards[-100:].mean() > 0.5  # epsilon ends at 0.05: most late episodes reach the goal
    assert lesson.success_rate(env, lambda s: int(Q[s].argmax()), 5, seed=1) == 1.0
    assert Q[0].max() == pytest.approx(Q_star[0].max(), abs=0.05)  # 0.9 ** 5: six steps to the goal
    assert Q_star[0].max() == pytest.approx(0.9**5)


def test_run_episode_tells_terminated_from_truncated(lesson):
    import gymnasium as gym

    assert lesson.run_episode(gym.make("CartPole-v1", max_episode_steps=3), lambda obs: 0, seed=0) == (
        3.0, 3, False, True,
    )  # fmt: skip
    total, steps, terminated, truncated = lesson.run_episode(gym.make("CartPole-v1"), lambda obs: 0, seed=0)
    assert terminated and not truncated and total == steps < 20  # pushing left only: the pole falls fast


@pytest.mark.slow
def test_without_the_rendering_extra_the_lesson_skips_the_gif(tmp_path, monkeypatch):
    fake = tmp_path / "no_pygame" / "pygame"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError(\"No module named 'pygame'\", name='pygame')\n")
    monkeypatch.setenv("PYTHONPATH", str(fake.parent))  # found before the real pygame
    data = run_lesson(LESSON, tmp_path=tmp_path)  # exits 0: every outcome passed
    assert "no GIF: pygame is missing; pip install -e '.[rl-extras]'" in data["stdout"]
    assert not (tmp_path / "runs" / "advanced" / "04_reinforcement_learning" / "cartpole_agent.gif").exists()
