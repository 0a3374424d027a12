"""Deep Q-learning for small Gymnasium tasks: a replay buffer, the TD targets and the DQN loop.

The reinforcement-learning lesson (``advanced/04_reinforcement_learning``) walks through these pieces
and trains with them; ``benchmarks/rl_dqn_vs_sb3.py`` runs the same loop against Stable-Baselines3.
The defaults of :class:`DQNConfig` are the RL Baselines3 Zoo's DQN hyperparameters for CartPole-v1
(``hyperparams/dqn.yml``), and the loop follows Stable-Baselines3's DQN where it matters for them:
the target network is copied every ``target_update_interval`` environment steps, ``gradient_steps``
updates run after every ``train_freq`` steps, and a time-limit truncation is not a terminal state.

Gymnasium is an optional extra (``pip install -e ".[rl]"``); only :func:`make_env` and
:func:`train_dqn` need it.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dlkit.config import flag
from dlkit.errors import UserError
from dlkit.progress import progress

__all__ = [
    "Batch", "DQNConfig", "DQNResult", "ReplayBuffer", "double_dqn_target", "dqn_update", "evaluate_greedy",
    "greedy_action", "linear_epsilon", "make_env", "q_network", "td_target", "train_dqn",
]  # fmt: skip


@dataclass
class DQNConfig:
    """DQN's hyperparameters; the defaults are the RL Baselines3 Zoo's for CartPole-v1 (50k steps)."""

    env_id: str = flag("CartPole-v1", help="a Gymnasium task with vector observations, discrete actions")
    total_steps: int = flag(50_000, help="environment steps of training", min=1)
    lr: float = 2.3e-3
    batch_size: int = 64
    buffer_size: int = flag(100_000, help="transitions the replay buffer keeps", min=1)
    learning_starts: int = flag(1_000, help="steps of random actions before the first update", min=0)
    gamma: float = flag(0.99, help="discount of the next step's value", min=0, max=1)
    train_freq: int = flag(256, help="environment steps between bursts of updates", min=1)
    gradient_steps: int = flag(128, help="updates in each burst", min=1)
    target_update_interval: int = flag(10, help="environment steps between target-network copies", min=1)
    exploration_fraction: float = flag(
        0.16, help="share of the steps over which epsilon falls", above=0, max=1
    )
    exploration_final_eps: float = flag(0.04, help="epsilon at the end of that fall", min=0, max=1)
    hidden: int = flag(256, help="units in each of the Q-network's two hidden layers", min=1)
    max_grad_norm: float = flag(10.0, help="gradients are clipped to this norm", above=0)
    eval_every: int = flag(2_500, help="environment steps between greedy evaluations", min=1)
    eval_episodes: int = flag(10, help="episodes in each greedy evaluation", min=1)
    solved_return: float = flag(500.0, help="mean greedy return that counts as solved", min=-1e9)


def make_env(env_id: str, **kwargs: Any) -> Any:
    """``gymnasium.make(env_id, **kwargs)``; a clear error when Gymnasium or the environment is missing."""
    try:
        import gymnasium as gym
    except ImportError as e:
        raise UserError(
            'reinforcement learning needs Gymnasium: pip install -e ".[rl]" (or pip install gymnasium)'
        ) from e
    try:
        return gym.make(env_id, **kwargs)
    except gym.error.Error as e:
        raise UserError(f"Gymnasium cannot make {env_id!r} ({e}); e.g. CartPole-v1, Acrobot-v1") from e


class Batch(NamedTuple):
    """B transitions: obs (B, D) float32, actions (B,) int64, rewards, next_obs (B, D), terminated (B,)."""

    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    next_obs: torch.Tensor
    terminated: torch.Tensor


class ReplayBuffer:
    """The last ``capacity`` transitions in preallocated arrays; :meth:`sample` draws uniformly.

    A full buffer overwrites its oldest transition. ``next_obs`` is stored with each transition (not
    taken from the next row), so that the last step of an episode never points at the next episode.
    """

    def __init__(self, capacity: int, obs_dim: int, *, seed: int = 0) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity, self.pos, self.size = capacity, 0, 0
        self.obs = np.zeros((capacity, obs_dim), np.float32)
        self.next_obs = np.zeros((capacity, obs_dim), np.float32)
        self.actions = np.zeros(capacity, np.int64)
        self.rewards = np.zeros(capacity, np.float32)
        self.terminated = np.zeros(capacity, np.float32)
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.size

    def add(self, obs: Any, action: int, reward: float, next_obs: Any, terminated: bool) -> None:
        i = self.pos
        self.obs[i], self.actions[i], self.rewards[i] = obs, action, reward
        self.next_obs[i], self.terminated[i] = next_obs, float(terminated)
        self.pos = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int) -> Batch:
        """``batch_size`` transitions drawn uniformly, with replacement, from those stored."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        idx = self.rng.integers(0, self.size, batch_size)
        return Batch(*(torch.from_numpy(a[idx]) for a in self._arrays()))

    def _arrays(self) -> tuple[np.ndarray, ...]:
        return self.obs, self.actions, self.rewards, self.next_obs, self.terminated


def td_target(
    rewards: torch.Tensor, next_q_target: torch.Tensor, terminated: torch.Tensor, gamma: float
) -> torch.Tensor:
    """DQN's target r + gamma * max_a' Q_target(s', a'), with no bootstrap after a terminal state.

    ``next_q_target`` is (B, A); ``rewards`` and ``terminated`` (1.0 where the episode ended) are (B,).
    """
    return rewards + gamma * (1.0 - terminated) * next_q_target.max(dim=1).values


def double_dqn_target(
    rewards: torch.Tensor,
    next_q_online: torch.Tensor,
    next_q_target: torch.Tensor,
    terminated: torch.Tensor,
    gamma: float,
) -> torch.Tensor:
    """Double DQN (van Hasselt et al. 2016): the online network picks a', the target network values it.

    Taking the max of one noisy estimate overestimates; picking with one network and evaluating with
    another removes most of that bias. Where both networks agree on a', this equals :func:`td_target`.
    """
    best = next_q_online.argmax(dim=1, keepdim=True)  # (B, 1)
    return rewards + gamma * (1.0 - terminated) * next_q_target.gather(1, best).squeeze(1)


def linear_epsilon(step: int, total_steps: int, fraction: float, final_eps: float) -> float:
    """Epsilon falls linearly from 1 to ``final_eps`` over the first ``fraction`` of the steps."""
    return 1.0 + (final_eps - 1.0) * min(1.0, step / (fraction * total_steps))


def q_network(obs_dim: int, num_actions: int, hidden: int = 256) -> nn.Sequential:
    """An MLP from an observation (B, obs_dim) to one Q-value per action (B, num_actions)."""
    return nn.Sequential(
        nn.Linear(obs_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
        nn.Linear(hidden, num_actions),
    )  # fmt: skip


def dqn_update(
    q_net: nn.Module,
    target_net: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: Batch,
    *,
    gamma: float,
    max_grad_norm: float,
    double: bool = False,
) -> float:
    """One gradient step on the Huber loss between Q(s, a) and the (Double) DQN target; returns the loss."""
    with torch.no_grad():  # the target is a fixed number to regress on, not something to move
        next_q_target = target_net(batch.next_obs)
        if double:
            target = double_dqn_target(
                batch.rewards, q_net(batch.next_obs), next_q_target, batch.terminated, gamma
            )
        else:
            target = td_target(batch.rewards, next_q_target, batch.terminated, gamma)
    q_taken = q_net(batch.obs).gather(1, batch.actions[:, None]).squeeze(1)  # Q(s, a) of the actions taken
    # Huber: squared error below 1, absolute above, so one badly wrong target cannot blow up a step.
    loss = F.smooth_l1_loss(q_taken, target)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(q_net.parameters(), max_grad_norm)
    optimizer.step()
    return loss.item()


@torch.no_grad()
def greedy_action(q_net: nn.Module, obs: Any) -> int:
    """argmax_a Q(obs, a) for one observation."""
    return int(q_net(torch.as_tensor(obs, dtype=torch.float32)[None]).argmax(dim=1).item())


def evaluate_greedy(q_net: nn.Module, env: Any, episodes: int, *, seed: int | None = None) -> list[float]:
    """The return of each of ``episodes`` greedy episodes (no exploration); ``seed`` seeds the first reset."""
    returns = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed if episode == 0 else None)
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(greedy_action(q_net, obs))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    return returns


@dataclass
class DQNResult:
    """What one training run measured: greedy evaluations, training episodes, and the time it took."""

    seed: int
    double: bool
    eval_steps: list[int] = field(default_factory=list)
    eval_returns: list[float] = field(default_factory=list)  # mean greedy return at each eval step
    episode_steps: list[int] = field(default_factory=list)  # the step at which each training episode ended
    episode_returns: list[float] = field(default_factory=list)
    steps_to_solved: int | None = None  # first eval step whose mean greedy return reached solved_return
    best_state: dict[str, torch.Tensor] | None = None  # weights at the latest of the best evaluations
    train_seconds: float = 0.0  # wall time of acting and learning, evaluations left out
    train_cpu_seconds: float = 0.0  # the same in CPU time of this process (what a busy machine inflates less)
    eval_seconds: float = 0.0
    q_net: nn.Module | None = None

    def add_evaluation(self, step: int, returns: list[float], solved_return: float, q_net: nn.Module) -> None:
        """Record a greedy evaluation at ``step``; keep the weights if it is the best so far (or ties it)."""
        self.eval_steps.append(step)
        self.eval_returns.append(float(np.mean(returns)))
        if self.steps_to_solved is None and self.eval_returns[-1] >= solved_return:
            self.steps_to_solved = step
        if self.eval_returns[-1] >= max(self.eval_returns):
            self.best_state = copy.deepcopy(q_net.state_dict())

    @property
    def final_return(self) -> float:
        return self.eval_returns[-1] if self.eval_returns else float("nan")

    @property
    def steps_per_second(self) -> float:
        return self.eval_steps[-1] / self.train_seconds if self.eval_steps and self.train_seconds else 0.0


def train_dqn(cfg: DQNConfig, seed: int, *, double: bool = False, desc: str = "") -> DQNResult:
    """Train a DQN (or Double DQN) agent on ``cfg.env_id`` for ``cfg.total_steps`` environment steps.

    Every ``cfg.eval_every`` steps and at the end, ``cfg.eval_episodes`` greedy episodes on a separate
    environment measure the policy. Seeds: the network's initial weights, the exploration, the buffer's
    sampling and both environments all derive from ``seed``.
    """
    env, eval_env = make_env(cfg.env_id), make_env(cfg.env_id)
    if not hasattr(env.action_space, "n") or len(env.observation_space.shape or ()) != 1:
        raise UserError(
            f"DQN needs discrete actions and vector observations; {cfg.env_id} has {env.action_space}"
        )
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    obs_dim, num_actions = env.observation_space.shape[0], int(env.action_space.n)
    q_net = q_network(obs_dim, num_actions, cfg.hidden)
    target_net = copy.deepcopy(q_net)
    optimizer = torch.optim.Adam(
        q_net.parameters(), lr=cfg.lr, fused=True
    )  # one kernel per step: 2.5x faster
    buffer = ReplayBuffer(cfg.buffer_size, obs_dim, seed=seed)
    result = DQNResult(seed=seed, double=double, q_net=q_net)
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    episode_return, start, cpu_start, eval_cpu = 0.0, time.perf_counter(), time.process_time(), 0.0
    for step in progress(range(1, cfg.total_steps + 1), desc=desc or f"seed {seed}"):
        epsilon = linear_epsilon(step, cfg.total_steps, cfg.exploration_fraction, cfg.exploration_final_eps)
        explore = step <= cfg.learning_starts or rng.random() < epsilon
        action = env.action_space.sample() if explore else greedy_action(q_net, obs)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        # A time limit (truncated) is not the end of the task: the target still bootstraps from s'.
        buffer.add(obs, action, float(reward), next_obs, terminated)
        obs, episode_return = next_obs, episode_return + float(reward)
        if terminated or truncated:
            result.episode_steps.append(step)
            result.episode_returns.append(episode_return)
            obs, episode_return = env.reset()[0], 0.0
        if step > cfg.learning_starts and step % cfg.train_freq == 0:
            for _ in range(cfg.gradient_steps):
                batch = buffer.sample(cfg.batch_size)
                dqn_update(q_net, target_net, optimizer, batch, gamma=cfg.gamma,
                           max_grad_norm=cfg.max_grad_norm, double=double)  # fmt: skip
        if step % cfg.target_update_interval == 0:
            target_net.load_state_dict(q_net.state_dict())
        if step % cfg.eval_every == 0 or step == cfg.total_steps:
            eval_start, eval_cpu_start = time.perf_counter(), time.process_time()
            first = not result.eval_steps  # seeded once; later evaluations continue its random stream
            returns = evaluate_greedy(
                q_net, eval_env, cfg.eval_episodes, seed=seed + 1_000_000 if first else None
            )
            result.add_evaluation(step, returns, cfg.solved_return, q_net)
            result.eval_seconds += time.perf_counter() - eval_start
            eval_cpu += time.process_time() - eval_cpu_start
    result.train_seconds = time.perf_counter() - start - result.eval_seconds
    result.train_cpu_seconds = time.process_time() - cpu_start - eval_cpu
    env.close()
    eval_env.close()
    return result
