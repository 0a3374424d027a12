"""Reference solutions for advanced/04's exercises (the test suite checks them with the same checks)."""

from __future__ import annotations

import torch
from torch import nn


def double_dqn_targets(
    q_net: nn.Module, target_net: nn.Module, rewards: torch.Tensor, next_obs: torch.Tensor,
    terminated: torch.Tensor, gamma: float,
) -> torch.Tensor:  # fmt: skip
    with torch.no_grad():
        best = q_net(next_obs).argmax(dim=1, keepdim=True)  # the online network picks a'
        value = target_net(next_obs).gather(1, best).squeeze(1)  # the target network values it
        return rewards + gamma * (1.0 - terminated) * value


def discounted_returns(
    rewards: torch.Tensor, terminated: torch.Tensor, last_value: float, gamma: float
) -> torch.Tensor:
    returns = torch.empty_like(rewards)
    future = torch.as_tensor(last_value, dtype=rewards.dtype)
    for t in range(len(rewards) - 1, -1, -1):  # backwards: G_t needs G_{t+1}
        future = rewards[t] + gamma * (1.0 - terminated[t]) * future
        returns[t] = future
    return returns


def epsilon_greedy_probs(q_values: torch.Tensor, epsilon: float) -> torch.Tensor:
    num_actions = q_values.shape[1]
    probs = torch.full_like(q_values, epsilon / num_actions)
    greedy = q_values.argmax(dim=1, keepdim=True)
    return probs.scatter_add(1, greedy, torch.full_like(greedy, 1.0 - epsilon, dtype=q_values.dtype))
