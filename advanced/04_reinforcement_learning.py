# %% [markdown]
# # Advanced 04 · Reinforcement learning: Q-learning by hand, then a deep Q-network on CartPole
#
# Nobody hands a reinforcement learner the right answers. An *agent* acts in an *environment*, receives
# a reward after each action, and must find out which actions pay off in the long run. We start with a
# table of values on a tiny frozen lake, where each update can be worked by hand and the best possible
# policy computed exactly; then a neural network replaces the table (DQN) and learns to balance a pole.
#
# **What you will learn**
# - Gymnasium's loop: `reset(seed=...)`, the five values of `step`, `terminated` vs `truncated`;
# - tabular Q-learning: the Bellman update by hand, the learned values against value iteration's;
# - DQN in PyTorch: replay buffer, target network, epsilon schedule, Huber loss, gradient clipping;
# - Double DQN against DQN over seeds, learning curves as bands (never one lucky run), a GIF of the agent.
#
# Gymnasium (the `rl` extra) simulates in pure Python: nothing to download. The GIF needs pygame and
# imageio (the optional `rl-extras` extra); without them the lesson says so and skips it. DQN's pieces
# live in `dlkit.rl`, which `benchmarks/rl_dqn_vs_sb3.py` races against Stable-Baselines3.

# %%
from __future__ import annotations

import copy
import os
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dlkit import rl
from dlkit.config import flag
from dlkit.lesson import Lesson, LessonConfig, exactly, in_notebook
from dlkit.metrics import CSVLogger
from dlkit.rl import DQNConfig, ReplayBuffer, make_env, q_network, train_dqn


@dataclass
class Config(LessonConfig, DQNConfig):
    """Q-learning on FrozenLake, then DQN and Double DQN on CartPole-v1 (DQN's defaults: the Zoo's)."""

    q_episodes: int = flag(20_000, help="FrozenLake episodes of tabular Q-learning", min=1)
    q_alpha: float = flag(0.05, help="step size of the tabular Bellman update", above=0, max=1)
    test_episodes: int = flag(1_000, help="episodes that measure a FrozenLake policy's success", min=1)
    num_seeds: int = flag(5, help="CartPole runs of DQN and of Double DQN (seeds seed, seed+1, ...)", min=1)
    threads: int = 1  # small MLPs run fastest on one thread (see benchmarks/rl_dqn_vs_sb3.py)


# Quick mode: a smaller network updated every 4 steps learns something in 4,000 steps; the Zoo's bursts
# of 128 updates every 256 steps need tens of thousands.
quick = {"q_episodes": 3000, "q_alpha": 0.1, "test_episodes": 200, "num_seeds": 1, "total_steps": 4000,
         "learning_starts": 500, "train_freq": 4, "gradient_steps": 2, "target_update_interval": 200,
         "hidden": 64, "lr": 1e-3, "exploration_fraction": 0.25, "exploration_final_eps": 0.05,
         "eval_every": 1000}  # fmt: skip
lesson = Lesson("advanced/04_reinforcement_learning", Config, quick=quick)
cfg, full = lesson.cfg, not lesson.quick
if cfg.threads:
    torch.set_num_threads(cfg.threads)
print(f"torch threads: {torch.get_num_threads()}; DQN trains on the CPU (a GPU gains nothing on a tiny MLP)")
lesson.uses_data("environments", "Gymnasium CartPole-v1 and FrozenLake-v1 (simulated; nothing to download)")

# %% [markdown]
# ## The loop of an agent and an environment
#
# `reset(seed=...)` starts an episode and returns the first observation; `step(action)` returns five
# values: the next observation, the reward, `terminated` (the task itself ended: the pole fell, the agent
# reached the goal or a hole), `truncated` (a time limit cut the episode short) and an info dict.
# CartPole's observation is (cart position, cart velocity, pole angle, pole angular velocity); its two
# actions push the cart left or right; every step the pole stays up is worth +1, for at most 500 steps.


# %%
def run_episode(env, policy, seed: int | None = None) -> tuple[float, int, bool, bool]:
    """Play one episode with ``policy(obs) -> action``: (return, steps, terminated, truncated)."""
    obs, info = env.reset(seed=seed)
    total, steps = 0.0, 0
    while True:
        obs, reward, terminated, truncated, info = env.step(policy(obs))
        total, steps = total + float(reward), steps + 1
        if terminated or truncated:
            return total, steps, terminated, truncated


env = make_env("CartPole-v1")
print("observations:", env.observation_space, "\nactions:", env.action_space)
random_policy = lambda obs: env.action_space.sample()  # noqa: E731
episodes = []
for _ in range(2):  # the same seeds twice: the same start state and the same random actions
    env.action_space.seed(cfg.seed)
    episodes.append([run_episode(env, random_policy, seed=cfg.seed + i) for i in range(100)])
random_return = float(np.mean([ret for ret, *_ in episodes[0]]))
short = make_env("CartPole-v1", max_episode_steps=5)  # no pole falls within 5 steps
_, short_steps, short_terminated, short_truncated = run_episode(short, random_policy, seed=cfg.seed)
print(f"random policy: mean return {random_return:.1f} over 100 episodes")
print(f"with a 5-step limit: {short_steps} steps, terminated={short_terminated}, truncated={short_truncated}")
lesson.record("seeded_episodes_repeat", float(episodes[0] == episodes[1]), **exactly(1))
lesson.record("step_limit_truncates", float(short_truncated and not short_terminated), **exactly(1))

# %% [markdown]
# What to notice: a random policy keeps the pole up for about 22 steps. The difference between the two
# ends matters for learning: after `terminated` there is no future reward, after `truncated` there is
# (the pole was still up). Treating a time-out as the end teaches the agent that step 500 is a cliff.
#
# ## Tabular Q-learning on FrozenLake
#
# FrozenLake is a 4x4 grid: start `S`, frozen `F`, holes `H`, goal `G` (reward 1, the only reward).
# The ice is slippery: the agent moves the way it chose only a third of the time, else sideways.
# Q(s, a) is the expected discounted return of taking action a in state s and acting well afterwards;
# it satisfies the Bellman equation Q(s, a) = E[r + gamma max_a' Q(s', a')]. Q-learning replaces the
# expectation by the one transition it just saw and moves Q(s, a) a step alpha towards that target.
# While it learns, it explores epsilon-greedily: a random action with probability epsilon (falling from
# 1 to 0.05 over half the episodes, and always where all four values are still equal), else the best.


# %%
def bellman_update(Q: np.ndarray, s: int, a: int, r: float, s_next: int, terminated: bool,
                   alpha: float, gamma: float) -> None:  # fmt: skip
    """Q(s, a) += alpha (r + gamma max_a' Q(s', a') - Q(s, a)); after a terminal state the target is r."""
    target = r if terminated else r + gamma * Q[s_next].max()
    Q[s, a] += alpha * (target - Q[s, a])


Q = np.zeros((16, 4))
Q[9, 2], Q[10] = 0.2, [0.1, 0.5, 0.3, 0.0]
bellman_update(Q, s=9, a=2, r=0.0, s_next=10, terminated=False, alpha=0.5, gamma=0.9)
Q[14, 2], Q[15] = 0.4, 7.0  # the goal's row is never used: nothing follows a terminal state
bellman_update(Q, s=14, a=2, r=1.0, s_next=15, terminated=True, alpha=0.5, gamma=0.9)
# By hand: 0.2 + 0.5 (0 + 0.9 * 0.5 - 0.2) = 0.325 and 0.4 + 0.5 (1 - 0.4) = 0.7.
lesson.record("bellman_hand_error", max(abs(Q[9, 2] - 0.325), abs(Q[14, 2] - 0.7)), max=1e-12)


def q_learning(env, num_episodes: int, alpha: float, gamma: float, seed: int) -> tuple[np.ndarray, ...]:
    """Tabular Q-learning with epsilon-greedy exploration: (Q table, reward of each episode)."""
    rng = np.random.default_rng(seed)
    Q, rewards = np.zeros((env.observation_space.n, env.action_space.n)), np.zeros(num_episodes)
    for episode in range(num_episodes):
        s, _ = env.reset(seed=seed if episode == 0 else None)
        epsilon, done = rl.linear_epsilon(episode, num_episodes, 0.5, 0.05), False
        while not done:
            explore = rng.random() < epsilon or Q[s].max() == Q[s].min()
            a = int(rng.integers(Q.shape[1])) if explore else int(Q[s].argmax())
            s_next, r, terminated, truncated, _ = env.step(a)
            bellman_update(Q, s, a, float(r), s_next, terminated, alpha, gamma)
            s, done = s_next, terminated or truncated
        rewards[episode] = r
    return Q, rewards


def value_iteration(P: dict, num_states: int, num_actions: int, gamma: float, tol=1e-10) -> np.ndarray:
    """Q* from the known model P[s][a] = [(probability, s', r, terminated)]: Bellman's equation, iterated."""
    Q = np.zeros((num_states, num_actions))
    while True:
        V = Q.max(axis=1)
        Q_new = np.array([[sum(p * (r + gamma * (not term) * V[s2]) for p, s2, r, term in P[s][a])
                           for a in range(num_actions)] for s in range(num_states)])  # fmt: skip
        if np.abs(Q_new - Q).max() < tol:
            return Q_new
        Q = Q_new


def success_rate(env, policy, num_episodes: int, seed: int) -> float:
    """Share of episodes that reach the goal (return 1) under ``policy(state) -> action``."""
    env.action_space.seed(seed)
    returns = [run_episode(env, policy, seed if i == 0 else None)[0] for i in range(num_episodes)]
    return float(np.mean(returns))


lake = make_env("FrozenLake-v1", map_name="4x4", is_slippery=True)
tiles = lake.unwrapped.desc.astype(str)  # (4, 4) letters
print("\n".join("".join(row) for row in tiles))
Q, train_rewards = q_learning(lake, cfg.q_episodes, cfg.q_alpha, cfg.gamma, cfg.seed)
Q_star = value_iteration(lake.unwrapped.P, 16, 4, cfg.gamma)
test_seed = cfg.seed + 1  # evaluation episodes the agent never trained on; the same ones for every policy
success = {
    "random": success_rate(lake, lambda s: lake.action_space.sample(), cfg.test_episodes, test_seed),
    "Q-learning": success_rate(lake, lambda s: int(Q[s].argmax()), cfg.test_episodes, test_seed),
    "optimal": success_rate(lake, lambda s: int(Q_star[s].argmax()), cfg.test_episodes, test_seed),
}
print(", ".join(f"{k} {v:.3f}" for k, v in success.items()), f"of {cfg.test_episodes} episodes reach G")
print("greedy actions (0 left, 1 down, 2 right, 3 up):", Q.argmax(1), "learned,", Q_star.argmax(1), "optimal")

# %%
fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
for ax, title, table in [(axes[0], "learned max_a Q(s, a)", Q), (axes[1], "V* (value iteration)", Q_star)]:
    ax.imshow(table.max(1).reshape(4, 4), cmap="viridis", vmin=0, vmax=Q_star.max())
    for s in range(16):
        label = "←↓→↑"[table[s].argmax()] if tiles.ravel()[s] in "SF" else tiles.ravel()[s]
        ax.text(s % 4, s // 4, f"{label}\n{table[s].max():.2f}", ha="center", va="center", color="w")
    ax.set(title=title, xticks=[], yticks=[])
window = max(1, cfg.q_episodes // 50)
axes[2].plot(np.convolve(train_rewards, np.ones(window) / window, mode="valid"))
axes[2].axhline(success["optimal"], ls=":", color="gray", label="optimal policy")
axes[2].set(title="training (with exploration)", xlabel="episode", ylabel=f"success, mean of {window}")
axes[2].legend()
lesson.savefig(fig, "frozenlake_values")
random_success = success["random"]
lesson.record("q_learning_success", success["Q-learning"], min=0.65 if full else 0.4, chance=random_success)
lesson.record("optimal_success", success["optimal"], min=0.68 if full else 0.6, max=0.8 if full else 0.88)

# %% [markdown]
# What to notice: no policy beats about 74% on slippery ice, and Q-learning, which never saw the model,
# gets there from samples alone. The values fall away from the goal by a factor of about gamma per
# step, and more near holes; the arrows point away from holes rather than towards the goal.
#
# ## From a table to a network: the pieces of DQN
#
# CartPole's states are four real numbers: no table can hold them, so a network Q(s; theta) outputs one
# value per action. Regressing it on its own targets is unstable, and DQN (Mnih et al. 2015) adds:
# - a **replay buffer**: past transitions sampled at random, so that a batch is not 64 steps in a row;
# - a **target network**: a copy of Q, refreshed now and then, computes the targets so they hold still;
# - the **TD target** r + gamma max_a' Q_target(s', a'), with no bootstrap after `terminated`;
# - **Double DQN** (van Hasselt et al. 2016): the online network picks a', the target network values it.


# %%
buffer = ReplayBuffer(capacity=5, obs_dim=1, seed=cfg.seed)
for t in range(8):  # 8 transitions into room for 5: the oldest three are overwritten
    buffer.add([t], action=0, reward=float(t), next_obs=[t + 1], terminated=False)
print(f"buffer holds {len(buffer)}: obs {sorted(buffer.obs[:, 0].tolist())}; a sample of 4: "
      f"{buffer.sample(4).obs.squeeze(1).tolist()}")  # fmt: skip
lesson.record("buffer_keeps_newest", float(sorted(buffer.obs[:, 0]) == [3, 4, 5, 6, 7]), **exactly(1))

rewards, terminated = torch.tensor([1.0, 1.0]), torch.tensor([0.0, 1.0])
next_q_online = torch.tensor([[0.0, 1.0], [1.0, 0.0]])  # the online network prefers a'=1, then a'=0
next_q_target = torch.tensor([[5.0, 2.0], [3.0, 4.0]])  # the target network values those at 2 and 3
dqn = rl.td_target(rewards, next_q_target, terminated, gamma=0.9)
double = rl.double_dqn_target(rewards, next_q_online, next_q_target, terminated, gamma=0.9)
print(f"TD target {dqn.tolist()}, Double DQN target {double.tolist()}")  # by hand: 1 + 0.9 * 5 = 5.5, 1
hand = torch.tensor([5.5, 1.0, 1.0 + 0.9 * 2.0, 1.0])
lesson.record("td_targets_hand_error", (torch.cat([dqn, double]) - hand).abs().max(), max=1e-6)

# %% [markdown]
# What to notice: the terminal row's target is the reward alone; in the first row Double DQN's target
# is lower, because the action the online network likes is not the one the target network values most.
# Double DQN's target is never above DQN's (a value is never above the max): it can only remove an
# overestimate. One update then regresses Q(s, a) of the actions taken on these targets with the Huber
# loss (squared below an error of 1, linear above: one wrong target cannot blow up a step) and clips
# the gradient norm to 10. Here is that update by hand, against `dlkit.rl.dqn_update`:

# %%
cartpole = make_env("CartPole-v1")
buffer = ReplayBuffer(cfg.buffer_size, obs_dim=4, seed=cfg.seed)
obs, _ = cartpole.reset(seed=cfg.seed)
for _ in range(cfg.learning_starts):  # random transitions, as at the start of training
    action = cartpole.action_space.sample()
    next_obs, reward, terminated, truncated, _ = cartpole.step(action)
    buffer.add(obs, action, float(reward), next_obs, terminated)
    obs = cartpole.reset()[0] if terminated or truncated else next_obs
torch.manual_seed(cfg.seed)
q_net = q_network(4, 2, cfg.hidden)
target_net, q_lib = copy.deepcopy(q_net), copy.deepcopy(q_net)
batch = buffer.sample(cfg.batch_size)
optimizer = torch.optim.Adam(q_net.parameters(), lr=cfg.lr)
with torch.no_grad():  # the target is a number to regress on: no gradient flows into it
    target = rl.td_target(batch.rewards, target_net(batch.next_obs), batch.terminated, cfg.gamma)  # (B,)
q_taken = q_net(batch.obs).gather(1, batch.actions[:, None]).squeeze(1)  # Q(s, a) of the actions taken, (B,)
loss = F.smooth_l1_loss(q_taken, target)
optimizer.zero_grad()
loss.backward()
grad_norm = nn.utils.clip_grad_norm_(q_net.parameters(), cfg.max_grad_norm)
optimizer.step()
lib_loss = rl.dqn_update(q_lib, target_net, torch.optim.Adam(q_lib.parameters(), lr=cfg.lr), batch,
                      gamma=cfg.gamma, max_grad_norm=cfg.max_grad_norm)  # fmt: skip
weight_diff = max(
    (a - b).abs().max().item() for a, b in zip(q_net.parameters(), q_lib.parameters(), strict=True)
)
print(f"loss {loss.item():.4f} (dqn_update: {lib_loss:.4f}), gradient norm before clipping {grad_norm:.3f}")
lesson.record("hand_update_vs_dqn_update_diff", weight_diff, max=1e-7)

# %% [markdown]
# ## DQN and Double DQN on CartPole, over seeds
#
# `dlkit.rl.train_dqn` is the loop (read it: 50 lines). Each step it acts epsilon-greedily (random for
# the first 1,000 steps, then epsilon falls from 1 to 0.04 over 8,000), stores the transition, and every
# 256 steps runs 128 updates like the one above; every 10 steps the target network becomes a copy of
# the online one, so it holds still through each burst. Every 2,500 steps 10 greedy episodes
# (no exploration) measure the policy. These are the RL Baselines3 Zoo's hyperparameters for CartPole
# (`hyperparams/dqn.yml`), unchanged: the Zoo reports 500 +- 0 at 50,000 steps for them. RL results
# vary a lot from seed to seed, so each variant runs `num_seeds` times and we look at all of them.

# %%
runs: dict[str, list] = {"DQN": [], "Double DQN": []}
curves = CSVLogger(lesson.run_dir / "cartpole_evaluations.csv", append=False)  # one row per evaluation
per_seed = CSVLogger(lesson.run_dir / "cartpole_seeds.csv", append=False)  # one row per run
for name, use_double in (("DQN", False), ("Double DQN", True)):
    for seed in range(cfg.seed, cfg.seed + cfg.num_seeds):
        run = train_dqn(cfg, seed, double=use_double, desc=f"{name}, seed {seed}")
        runs[name].append(run)
        for step, greedy_return in zip(run.eval_steps, run.eval_returns, strict=True):
            curves.log({"variant": name, "seed": seed, "step": step, "greedy_return": greedy_return})
        per_seed.log({"variant": name, "seed": seed, "first_solved_step": run.steps_to_solved or "",
                      "final_return": run.final_return, "best_return": max(run.eval_returns),
                      "train_wall_s": round(run.train_seconds, 1), "eval_wall_s": round(run.eval_seconds, 1),
                      "train_cpu_s": round(run.train_cpu_seconds, 1)})  # fmt: skip
        when = f"at step {run.steps_to_solved:,}" if run.steps_to_solved else "never"
        print(f"{name}, seed {seed}: 500 {when}, final {run.final_return:.0f}, "
              f"{run.train_seconds:.0f} s wall ({run.train_cpu_seconds:.0f} s CPU)")  # fmt: skip

fig, ax = plt.subplots(figsize=(7.5, 4))
for name, rs in runs.items():
    returns = np.array([r.eval_returns for r in rs])  # (seeds, evaluations)
    ax.plot(rs[0].eval_steps, returns.mean(0), label=f"{name}: mean of {len(rs)} seeds")
    ax.fill_between(rs[0].eval_steps, returns.min(0), returns.max(0), alpha=0.2)
ax.axhline(random_return, ls=":", color="gray", label="random policy")
ax.set(xlabel="environment steps", ylabel=f"greedy return ({cfg.eval_episodes} episodes)",
       title=f"{cfg.env_id} (band: lowest to highest seed)")  # fmt: skip
ax.legend()
ax.grid(alpha=0.3)
lesson.savefig(fig, "cartpole_curves")

# %% [markdown]
# What to notice: the band is wide. A seed reaches 500, falls back to 100, climbs again: DQN on
# CartPole forgets, because once the pole stays up the buffer fills with states near the centre. That
# is why we report, for every seed, both the first evaluation at 500 and the final one, and why the
# agent we keep is the network of its best evaluation (as the Zoo's `EvalCallback` keeps `best_model`).

# %%
solved = {name: np.mean([r.steps_to_solved is not None for r in rs]) for name, rs in runs.items()}
final = {name: np.mean([r.final_return for r in rs]) for name, rs in runs.items()}
for name in runs:
    print(f"{name}: {solved[name]:.0%} of seeds reached 500, mean final return {final[name]:.0f}")
lesson.record("dqn_final_return", final["DQN"], min=100 if full else 50, chance=random_return)
lesson.record("double_dqn_final_return", final["Double DQN"], min=100 if full else 50, chance=random_return)
if full:  # the goal: 500 within 50,000 steps on at least 4 of 5 seeds
    lesson.record("dqn_seeds_solved_share", solved["DQN"], min=0.8, chance=0)
    lesson.record("double_dqn_seeds_solved_share", solved["Double DQN"], min=0.6, chance=0)

# %% [markdown]
# ## A GIF of the trained agent
#
# `render_mode="rgb_array"` makes `env.render()` return each frame as a (400, 600, 3) array; CartPole
# draws it with pygame. We play one fresh episode with the kept network of the best DQN seed.

# %%
best = max(runs["DQN"], key=lambda r: (max(r.eval_returns), r.final_return))
agent = copy.deepcopy(best.q_net)
agent.load_state_dict(best.best_state)
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # frames are drawn off-screen: no window, no display
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
try:
    import imageio.v3 as iio
    import pygame  # noqa: F401  (CartPole's renderer)
except ImportError as e:
    print(f"no GIF: {e.name} is missing; pip install -e '.[rl-extras]' (pygame, imageio) to draw one")
else:
    screen = make_env(cfg.env_id, render_mode="rgb_array")
    obs, _ = screen.reset(seed=cfg.seed + 100)
    frames, total, done = [], 0.0, False
    while not done:
        frames.append(screen.render()[::2, ::2])  # every other pixel: (200, 300, 3)
        obs, reward, terminated, truncated, _ = screen.step(rl.greedy_action(agent, obs))
        total, done = total + float(reward), terminated or truncated
    gif = lesson.run_dir / "cartpole_agent.gif"
    iio.imwrite(gif, frames[::2], duration=40, loop=0)  # every other frame at 25 fps: real time
    print(f"GIF of {len(frames)} steps (return {total:.0f}, seed {best.seed}'s best network): {gif}")
    if in_notebook():
        from IPython.display import Image, display

        display(Image(filename=str(gif)))

# %% [markdown]
# ## What you measured
#
# - seeded episodes repeat exactly, and a time limit truncates an episode without terminating it;
# - the Bellman update and the TD targets worked by hand; Q-learning's greedy policy on slippery ice
#   near value iteration's optimum (about 74%), from samples alone;
# - DQN and Double DQN on CartPole over seeds, with their spread: the first evaluation at 500 and the
#   final one per seed (`benchmarks/rl_dqn_vs_sb3.py` runs this loop against Stable-Baselines3's).

# %%
lesson.finish()

# %% [markdown]
# ## Exercises
# Fill in each stub below (its docstring says what to return), then run the last cell or
# `dlkit check advanced/04` in a terminal. The checks use small networks and hand-picked transitions.

# %% tags=["exercise"]
import torch
from torch import nn


def double_dqn_targets(q_net: nn.Module, target_net: nn.Module, rewards: torch.Tensor, next_obs: torch.Tensor,
                       terminated: torch.Tensor, gamma: float) -> torch.Tensor:  # fmt: skip
    """Add Double DQN: return the (B,) targets r + gamma * Q_target(s', argmax_a' Q_online(s', a')).

    `next_obs` is (B, D); `rewards` and `terminated` (1.0 where the episode ended) are (B,). The online
    network (q_net) picks a', the target network values it; no bootstrap after a terminal state; no
    gradient may flow into the target (torch.no_grad). Compare with `dlkit.rl.td_target`.
    """
    raise NotImplementedError


# %% tags=["exercise"]
import torch


def discounted_returns(rewards: torch.Tensor, terminated: torch.Tensor, last_value: float,
                       gamma: float) -> torch.Tensor:  # fmt: skip
    """Return G_t = r_t + gamma * (1 - terminated_t) * G_{t+1} for a (T,) stretch of steps, shape (T,).

    The stretch may cross episode ends (terminated_t = 1: nothing after step t counts); after its last
    step, G_T = last_value (a value estimate of the state the stretch stopped in). Loop backwards.
    """
    raise NotImplementedError


# %% tags=["exercise"]
import torch


def epsilon_greedy_probs(q_values: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Return the (B, A) probabilities with which epsilon-greedy picks each action, given Q (B, A).

    With probability epsilon the action is uniform over all A actions (the greedy one included), else
    it is the argmax: every action gets epsilon / A, the argmax 1 - epsilon more. Rows sum to 1.
    """
    raise NotImplementedError


# %%
lesson.check_exercises(globals())
