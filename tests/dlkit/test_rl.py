"""dlkit.rl: the replay buffer, the TD targets checked by hand, one DQN update, and the loop's bookkeeping."""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import dlkit.rl as rl
from dlkit.errors import UserError
from dlkit.rl import (
    DQNConfig,
    ReplayBuffer,
    double_dqn_target,
    dqn_update,
    linear_epsilon,
    q_network,
    td_target,
    train_dqn,
)

needs_gymnasium = pytest.mark.skipif(
    importlib.util.find_spec("gymnasium") is None,
    reason='Gymnasium is the "rl" extra: pip install -e ".[rl]"',
)


def filled_buffer(capacity: int, n: int, seed: int = 0) -> ReplayBuffer:
    """A buffer of 1-D transitions t = 0..n-1 with obs t, action t % 2, reward t, next obs t + 1."""
    buffer = ReplayBuffer(capacity, obs_dim=1, seed=seed)
    for t in range(n):
        buffer.add([t], t % 2, float(t), [t + 1], terminated=t % 3 == 2)
    return buffer


def test_buffer_keeps_the_newest_transitions_up_to_its_capacity():
    buffer = filled_buffer(capacity=4, n=3)
    assert len(buffer) == 3 and sorted(buffer.obs[:3, 0]) == [0, 1, 2]
    buffer = filled_buffer(capacity=4, n=10)
    assert len(buffer) == 4
    assert sorted(buffer.obs[:, 0].tolist()) == [6, 7, 8, 9]  # 0..5 overwritten, oldest first
    for row in range(4):  # every row is still one whole transition
        t = buffer.obs[row, 0]
        assert buffer.next_obs[row, 0] == t + 1 and buffer.rewards[row] == t and buffer.actions[row] == t % 2
        assert buffer.terminated[row] == float(t % 3 == 2)


def test_buffer_samples_uniformly_from_what_it_holds_only():
    buffer = filled_buffer(capacity=8, n=5)  # rows 5..7 are empty (zeros): never to be drawn
    batch = buffer.sample(20_000)
    assert batch.obs.shape == (20_000, 1) and batch.obs.dtype == torch.float32
    assert batch.actions.dtype == torch.int64 and batch.rewards.shape == batch.terminated.shape == (20_000,)
    counts = np.bincount(batch.obs[:, 0].long().numpy(), minlength=5)
    assert len(counts) == 5 and counts.min() > 0
    assert np.abs(counts / 20_000 - 0.2).max() < 0.02  # 4,000 each; sd ~57, so 2 points is > 6 sd
    assert torch.equal(batch.next_obs, batch.obs + 1) and torch.equal(batch.rewards, batch.obs[:, 0])


def test_buffer_sampling_repeats_with_its_seed_and_refuses_an_empty_buffer():
    a, b, c = filled_buffer(8, 8, seed=1), filled_buffer(8, 8, seed=1), filled_buffer(8, 8, seed=2)
    assert torch.equal(a.sample(16).obs, b.sample(16).obs)
    assert not torch.equal(a.sample(16).obs, c.sample(16).obs)
    with pytest.raises(ValueError, match="empty"):
        ReplayBuffer(4, 1).sample(2)
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer(0, 1)


def test_td_target_by_hand_with_a_terminal_state():
    rewards = torch.tensor([1.0, 0.0, 2.0], dtype=torch.float64)
    next_q = torch.tensor([[1.0, 3.0], [-2.0, -1.0], [9.0, 9.0]], dtype=torch.float64)
    terminated = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    target = td_target(rewards, next_q, terminated, gamma=0.5)
    # 1 + 0.5 * 3; 0 + 0.5 * (-1) (the max, though both are negative); terminal: the reward alone
    assert torch.allclose(target, torch.tensor([2.5, -0.5, 2.0], dtype=torch.float64), atol=1e-15)


def test_double_dqn_target_by_hand():
    rewards, terminated = torch.tensor([1.0, 1.0, 1.0]), torch.tensor([0.0, 0.0, 1.0])
    online = torch.tensor([[0.0, 1.0], [2.0, 1.0], [0.0, 1.0]])  # picks a' = 1, 0, 1
    target = torch.tensor([[5.0, 2.0], [3.0, 4.0], [5.0, 2.0]])
    double = double_dqn_target(rewards, online, target, terminated, gamma=0.9)
    assert torch.allclose(double, torch.tensor([1 + 0.9 * 2, 1 + 0.9 * 3, 1.0]))
    assert torch.allclose(
        td_target(rewards, target, terminated, 0.9), torch.tensor([1 + 0.9 * 5, 1 + 0.9 * 4, 1.0])
    )


def test_double_dqn_target_differs_from_dqn_exactly_where_the_networks_disagree():
    g = torch.Generator().manual_seed(0)
    B, A = 2_000, 4
    rewards, terminated = torch.randn(B, generator=g), (torch.rand(B, generator=g) < 0.2).double()
    online, target = torch.randn(B, A, generator=g), torch.randn(B, A, generator=g)
    online[:500] = target[:500] + 0.1  # here the online network ranks the actions as the target does
    rewards, online, target = rewards.double(), online.double(), target.double()
    dqn = td_target(rewards, target, terminated, gamma=0.99)
    double = double_dqn_target(rewards, online, target, terminated, gamma=0.99)
    disagree = (online.argmax(1) != target.argmax(1)) & (terminated == 0)
    assert 0 < disagree.sum() < B
    assert torch.equal(dqn[~disagree], double[~disagree])  # same a', or a terminal state: same target
    assert (double[disagree] < dqn[disagree]).all()  # a non-maximal action's value: strictly lower
    brute = torch.stack(
        [rewards[i] + 0.99 * (1 - terminated[i]) * target[i, online[i].argmax()] for i in range(B)]
    )
    assert torch.allclose(double, brute, atol=1e-12)


def test_linear_epsilon_schedule():
    assert linear_epsilon(0, 50_000, 0.16, 0.04) == 1.0
    assert linear_epsilon(4_000, 50_000, 0.16, 0.04) == pytest.approx(0.52)
    assert linear_epsilon(8_000, 50_000, 0.16, 0.04) == pytest.approx(0.04)
    assert linear_epsilon(49_000, 50_000, 0.16, 0.04) == pytest.approx(0.04)


def test_dqn_update_regresses_the_taken_actions_on_the_target_with_huber_and_clipping():
    torch.manual_seed(0)
    q_net = q_network(3, 2, hidden=16)
    target_net = copy.deepcopy(q_net)
    for p in target_net.parameters():  # a target network different from the online one
        p.data.add_(0.1)
    target_before = copy.deepcopy(target_net.state_dict())
    g = torch.Generator().manual_seed(1)
    batch = rl.Batch(torch.randn(8, 3, generator=g), torch.randint(0, 2, (8,), generator=g),
                     100 * torch.randn(8, generator=g), torch.randn(8, 3, generator=g),
                     torch.tensor([0.0, 1.0] * 4))  # fmt: skip
    # The oracle: the same step written out with torch.optim.SGD, whose step is lr * (clipped) gradient.
    oracle = copy.deepcopy(q_net)
    with torch.no_grad():
        y = batch.rewards + 0.9 * (1 - batch.terminated) * target_net(batch.next_obs).max(1).values
    loss = F.huber_loss(oracle(batch.obs)[torch.arange(8), batch.actions], y, delta=1.0)
    loss.backward()
    norm = torch.sqrt(sum((p.grad**2).sum() for p in oracle.parameters()))
    assert norm > 0.5  # rewards of ~100 make a large gradient, so the clip below is active
    expected = [p - 0.1 * p.grad * min(1.0, 0.5 / (norm.item() + 1e-6)) for p in oracle.parameters()]
    got = dqn_update(q_net, target_net, torch.optim.SGD(q_net.parameters(), lr=0.1), batch, gamma=0.9,
                     max_grad_norm=0.5)  # fmt: skip
    assert got == pytest.approx(loss.item(), rel=1e-6)
    for p, e in zip(q_net.parameters(), expected, strict=True):
        assert torch.allclose(p, e, atol=1e-6)
    for key, value in target_net.state_dict().items():  # the target network is left alone
        assert torch.equal(value, target_before[key])


TINY = DQNConfig(total_steps=300, learning_starts=100, train_freq=50, gradient_steps=5,
                 target_update_interval=10, hidden=16, eval_every=100, eval_episodes=2)  # fmt: skip


@needs_gymnasium
def test_train_dqn_evaluates_on_schedule_and_repeats_with_a_seed():
    a, b = train_dqn(TINY, seed=3), train_dqn(TINY, seed=3)
    assert a.eval_steps == [100, 200, 300] and len(a.eval_returns) == 3
    assert a.eval_returns == b.eval_returns and a.episode_returns == b.episode_returns
    for pa, pb in zip(a.q_net.parameters(), b.q_net.parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert sum(a.episode_returns) <= 300 and a.episode_steps == sorted(a.episode_steps)
    assert a.best_state is not None and a.final_return == a.eval_returns[-1]
    assert a.train_seconds > 0 and a.steps_per_second > 0
    c = train_dqn(TINY, seed=4)
    assert c.episode_returns != a.episode_returns


@needs_gymnasium
def test_train_dqn_stores_a_time_limit_as_not_terminal(monkeypatch):
    """Episodes cut at 5 steps (no pole falls that fast) are truncated: every stored transition bootstraps."""
    import gymnasium as gym

    stored: list[float] = []

    class RecordingBuffer(ReplayBuffer):
        def add(self, obs, action, reward, next_obs, terminated):  # type: ignore[override]
            stored.append(float(terminated))
            super().add(obs, action, reward, next_obs, terminated)

    monkeypatch.setattr(rl, "ReplayBuffer", RecordingBuffer)
    monkeypatch.setattr(rl, "make_env", lambda env_id: gym.make(env_id, max_episode_steps=5))
    result = train_dqn(dataclasses.replace(TINY, total_steps=100, eval_every=100), seed=0)
    assert len(stored) == 100 and not any(stored)
    assert result.episode_steps == list(range(5, 101, 5)) and set(result.episode_returns) == {5.0}


def test_make_env_without_gymnasium_is_a_user_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "gymnasium", None)  # import gymnasium now raises ImportError
    with pytest.raises(UserError, match=r"pip install -e \"\.\[rl\]\""):
        rl.make_env("CartPole-v1")


@needs_gymnasium
@pytest.mark.parametrize(
    ("env_id", "message"),
    [("CartPol-v1", "Gymnasium cannot make 'CartPol-v1'"), ("Pendulum-v1", "discrete actions")],
)
def test_an_unknown_or_continuous_task_is_a_user_error(env_id, message):
    with pytest.raises(UserError, match=message):
        train_dqn(dataclasses.replace(TINY, env_id=env_id), seed=0)
