"""Checks for advanced/04 (reinforcement learning): reference loops and tensors written here are the oracles,
on small networks and hand-picked transitions where Double DQN and DQN disagree."""

from __future__ import annotations

import torch
from torch import nn

from dlkit.exercises import expect, expect_no_grad, expect_tensor


def _nets() -> tuple[nn.Module, nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    q_net, target_net = nn.Linear(4, 3).double(), nn.Linear(4, 3).double()
    next_obs = torch.randn(12, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    return q_net, target_net, next_obs


def check_double_dqn_targets(double_dqn_targets) -> None:
    q_net, target_net, next_obs = _nets()
    rewards = torch.linspace(-1, 1, 12, dtype=torch.float64)
    terminated = torch.zeros(12, dtype=torch.float64)
    terminated[[2, 7]] = 1.0
    gamma = 0.9
    with torch.no_grad():
        q_online, q_target = q_net(next_obs), target_net(next_obs)
    picked = q_target.gather(1, q_online.argmax(1, keepdim=True)).squeeze(1)
    expected = rewards + gamma * (1 - terminated) * picked
    expect(bool((q_online.argmax(1) != q_target.argmax(1)).any()), "internal: the networks agree everywhere")
    got = double_dqn_targets(q_net, target_net, rewards, next_obs, terminated, gamma)
    shape = getattr(got, "shape", type(got).__name__)
    expect(
        isinstance(got, torch.Tensor) and got.shape == (12,),
        f"double_dqn_targets should return a (B,) = (12,) tensor, got {shape}",
    )
    expect_no_grad(got, "the target")
    vanilla = rewards + gamma * (1 - terminated) * q_target.max(1).values
    expect(
        not torch.allclose(got.double(), vanilla) or torch.allclose(vanilla, expected),
        "that is plain DQN's target (the target network's own max): pick a' = argmax of q_net(next_obs), "
        "then take target_net's value of that a'",
    )
    unmasked = rewards + gamma * picked
    expect(
        not torch.allclose(got.double(), unmasked),
        "rows where terminated = 1 still add gamma * Q(s', a'): after a terminal state the target is r alone",
    )
    expect_tensor(got, expected, "double_dqn_targets", reference="online argmax, target-network value")
    for p in (*q_net.parameters(), *target_net.parameters()):
        expect(p.grad is None, "a gradient reached a network: compute the target under torch.no_grad()")


def _returns_loop(rewards, terminated, last_value, gamma):
    out, future = [], last_value
    for r, done in zip(reversed(rewards.tolist()), reversed(terminated.tolist()), strict=True):
        future = r + gamma * (0.0 if done else future)
        out.append(future)
    return torch.tensor(out[::-1], dtype=torch.float64)


def check_discounted_returns(discounted_returns) -> None:
    rewards = torch.tensor([1.0, 0.0, 2.0, 1.0, -1.0, 0.5, 3.0], dtype=torch.float64)
    for terminated, last_value in (([0] * 7, 0.0), ([0] * 7, 10.0), ([0, 0, 1, 0, 0, 1, 0], 4.0)):
        terminated = torch.tensor(terminated, dtype=torch.float64)
        expected = _returns_loop(rewards, terminated, last_value, 0.9)
        got = discounted_returns(rewards, terminated, last_value, 0.9)
        what = f"discounted_returns with terminated={terminated.long().tolist()}, last_value={last_value}"
        expect_tensor(got, expected, what, reference="G_t = r_t + gamma (1 - terminated_t) G_{t+1}")


def check_epsilon_greedy_probs(epsilon_greedy_probs) -> None:
    q = torch.tensor(
        [[1.0, 3.0, 2.0, 0.0], [-1.0, -2.0, -0.5, -3.0], [0.2, 0.1, 0.0, 0.3]], dtype=torch.float64
    )
    for epsilon in (0.0, 0.1, 1.0):
        expected = torch.full_like(q, epsilon / 4)
        expected[torch.arange(3), q.argmax(1)] += 1 - epsilon
        got = epsilon_greedy_probs(q, epsilon)
        expect_tensor(
            got,
            expected,
            f"epsilon_greedy_probs(q, epsilon={epsilon})",
            reference="epsilon / A on every action, plus 1 - epsilon on the argmax",
        )
        expect_tensor(got.sum(1), torch.ones(3, dtype=torch.float64), "each row's sum (a distribution)")
