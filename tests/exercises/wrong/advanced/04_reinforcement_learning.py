"""Plausible wrong answers to advanced/04's exercises: each must make its check fail."""

from __future__ import annotations

import torch


def double_dqn_target_argmax(q_net, target_net, rewards, next_obs, terminated, gamma):
    with torch.no_grad():  # the target network picks and values a': plain DQN
        value = target_net(next_obs).max(dim=1).values
        return rewards + gamma * (1.0 - terminated) * value


def double_dqn_no_terminal_mask(q_net, target_net, rewards, next_obs, terminated, gamma):
    with torch.no_grad():
        best = q_net(next_obs).argmax(dim=1, keepdim=True)
        return rewards + gamma * target_net(next_obs).gather(1, best).squeeze(1)  # bootstraps past the end


def double_dqn_online_values(q_net, target_net, rewards, next_obs, terminated, gamma):
    best = q_net(next_obs).argmax(dim=1, keepdim=True)  # no no_grad, and the online net values a' too
    return rewards + gamma * (1.0 - terminated) * q_net(next_obs).gather(1, best).squeeze(1)


def returns_forward(rewards, terminated, last_value, gamma):
    returns, running = torch.empty_like(rewards), 0.0
    for t in range(len(rewards)):  # accumulates the past, not the future
        running = rewards[t] + gamma * running
        returns[t] = running
    return returns


def returns_ignore_terminated(rewards, terminated, last_value, gamma):
    returns, future = torch.empty_like(rewards), last_value
    for t in range(len(rewards) - 1, -1, -1):  # runs across episode ends
        future = rewards[t] + gamma * future
        returns[t] = future
    return returns


def epsilon_greedy_split_over_others(q_values, epsilon):
    a = q_values.shape[1]
    probs = torch.full_like(q_values, epsilon / (a - 1))  # the random action never picks the greedy one
    probs[torch.arange(len(q_values)), q_values.argmax(1)] = 1 - epsilon
    return probs


def epsilon_greedy_argmin(q_values, epsilon):
    probs = torch.full_like(q_values, epsilon / q_values.shape[1])
    probs[torch.arange(len(q_values)), q_values.argmin(1)] += 1 - epsilon  # the worst action
    return probs


WRONG = {
    "double_dqn_targets": [double_dqn_target_argmax, double_dqn_no_terminal_mask, double_dqn_online_values],
    "discounted_returns": [returns_forward, returns_ignore_terminated],
    "epsilon_greedy_probs": [epsilon_greedy_split_over_others, epsilon_greedy_argmin],
}
