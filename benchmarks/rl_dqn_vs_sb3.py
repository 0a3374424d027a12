"""Our DQN (dlkit.rl) against Stable-Baselines3's DQN on CartPole-v1: same hyperparameters, seeds, budget.

Both run the RL Baselines3 Zoo's CartPole-v1 DQN hyperparameters (hyperparams/dqn.yml: 50,000 steps,
lr 2.3e-3, batch 64, buffer 100,000, learning_starts 1,000, gamma 0.99, target copy every 10 steps,
128 updates every 256 steps, epsilon 1 -> 0.04 over 16% of the steps, [256, 256] MLP, gradient norm
clipped at 10), one after the other in this process, on one CPU thread unless --threads says otherwise.
Both are measured the same way: every 2,500 steps and at the end, 10 greedy episodes of the Q-network
(``dlkit.rl.evaluate_greedy``, the same seeds for both) give the mean return; the evaluations are left
out of the timed training. Goals (issue 12): a greedy evaluation of 500 within 50,000 steps on at
least 4 of 5 seeds, each seed within 3 minutes on one thread. Stable-Baselines3 is an optional extra
(``pip install -e ".[rl-extras]"``), not a course dependency::

    python benchmarks/rl_dqn_vs_sb3.py                          # seeds 0-4, ours then SB3 per seed
    python benchmarks/rl_dqn_vs_sb3.py --seeds 0 --total-steps 10000 --only ours --threads 2

Run it on a quiet machine: it prints the load average before and after, and the CPU time of each run
next to its wall time (other processes on the same cores inflate the wall time, far less the CPU time).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from dataclasses import replace

import torch

from dlkit.device import cpu_name
from dlkit.rl import DQNConfig, DQNResult, evaluate_greedy, make_env, train_dqn


def load_average() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"


def train_sb3(cfg: DQNConfig, seed: int) -> DQNResult:
    """Stable-Baselines3's DQN with ``cfg``'s hyperparameters, evaluated as ``dlkit.rl.train_dqn`` is."""
    from stable_baselines3 import DQN
    from stable_baselines3.common.callbacks import BaseCallback

    result = DQNResult(seed=seed, double=False)
    eval_env = make_env(cfg.env_id)
    spent = {"wall": 0.0, "cpu": 0.0}

    class GreedyEvaluation(BaseCallback):
        def _on_step(self) -> bool:
            step = self.num_timesteps
            if step % cfg.eval_every == 0 or step == cfg.total_steps:
                wall, cpu = time.perf_counter(), time.process_time()
                first = not result.eval_steps
                q_net = self.model.q_net  # obs (B, 4) -> Q-values (B, 2), like ours
                returns = evaluate_greedy(
                    q_net, eval_env, cfg.eval_episodes, seed=seed + 1_000_000 if first else None
                )
                result.add_evaluation(step, returns, cfg.solved_return, q_net)
                spent["wall"] += time.perf_counter() - wall
                spent["cpu"] += time.process_time() - cpu
            return True

    model = DQN(
        "MlpPolicy", make_env(cfg.env_id), learning_rate=cfg.lr, batch_size=cfg.batch_size,
        buffer_size=cfg.buffer_size, learning_starts=cfg.learning_starts, gamma=cfg.gamma,
        target_update_interval=cfg.target_update_interval, train_freq=cfg.train_freq,
        gradient_steps=cfg.gradient_steps, exploration_fraction=cfg.exploration_fraction,
        exploration_final_eps=cfg.exploration_final_eps, max_grad_norm=cfg.max_grad_norm,
        policy_kwargs={"net_arch": [cfg.hidden, cfg.hidden]}, seed=seed, device="cpu", verbose=0,
    )  # fmt: skip
    wall, cpu = time.perf_counter(), time.process_time()
    model.learn(total_timesteps=cfg.total_steps, callback=GreedyEvaluation())
    result.train_seconds = time.perf_counter() - wall - spent["wall"]
    result.train_cpu_seconds = time.process_time() - cpu - spent["cpu"]
    result.eval_seconds = spent["wall"]
    result.q_net = model.q_net
    return result


def row(name: str, r: DQNResult) -> str:
    solved = f"{r.steps_to_solved:,}" if r.steps_to_solved is not None else "never"
    return (
        f"{name:<5} {r.seed:>4} {solved:>12} {r.final_return:>7.1f} {max(r.eval_returns):>6.1f} "
        f"{r.train_seconds:>7.1f} {r.train_cpu_seconds:>7.1f} {r.steps_per_second:>7.0f} "
        f"{r.eval_steps[-1] / r.train_cpu_seconds:>10.0f}  " + " ".join(f"{v:.0f}" for v in r.eval_returns)
    )


def summary(name: str, results: list[DQNResult], budget: float) -> str:
    n = len(results)
    solved = [r.steps_to_solved for r in results if r.steps_to_solved is not None]
    mean = lambda values: sum(values) / len(values) if values else float("nan")  # noqa: E731
    wall, cpu = [r.train_seconds for r in results], [r.train_cpu_seconds for r in results]
    return (
        f"{name:<5} {len(solved)}/{n} seeds reached 500 (at step {mean(solved):,.0f} on average); "
        f"final return {mean([r.final_return for r in results]):.1f} on average; "
        f"{mean([r.steps_per_second for r in results]):.0f} env steps/s "
        f"({mean([r.eval_steps[-1] / c for r, c in zip(results, cpu, strict=True)]):.0f} per CPU second); "
        f"per seed: wall {min(wall):.0f}-{max(wall):.0f} s ({sum(w <= budget for w in wall)}/{n} within "
        f"{budget:.0f} s), CPU {min(cpu):.0f}-{max(cpu):.0f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--total-steps", type=int, default=50_000)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    parser.add_argument("--only", choices=("ours", "sb3"), default=None, help="run one side only")
    parser.add_argument("--budget", type=float, default=180.0, help="seconds allowed per seed (the goal)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = replace(DQNConfig(), total_steps=args.total_steps)
    sides = [s for s in ("ours", "sb3") if args.only in (None, s)]
    versions = f"torch {torch.__version__}, Python {platform.python_version()}"
    if "sb3" in sides:
        import gymnasium
        import stable_baselines3

        versions += f", gymnasium {gymnasium.__version__}, stable-baselines3 {stable_baselines3.__version__}"
    print(f"{cpu_name()}, {os.cpu_count()} logical CPUs; {versions}; torch threads {torch.get_num_threads()}")
    print(f"config: {cfg}")
    print(f"load average before: {load_average()}", flush=True)
    print("\nside  seed  500 at step   final   best  wall s   CPU s steps/s  per CPU s  greedy returns")
    results: dict[str, list[DQNResult]] = {s: [] for s in sides}
    for seed in args.seeds:
        for side in sides:
            r = train_dqn(cfg, seed) if side == "ours" else train_sb3(cfg, seed)
            results[side].append(r)
            print(row(side, r), flush=True)
    print()
    for side in sides:
        print(summary(side, results[side], args.budget))
    print(f"\nload average after: {load_average()}; process CPU time {time.process_time():.0f} s")


if __name__ == "__main__":
    sys.exit(main())
