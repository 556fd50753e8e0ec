"""What behaviour cloning could reach if the policy knew where things are: the upper bound that
bench_bc_inputs.py's image rows are measured against.

The simulator's scripted oracle acts for `--episodes` episodes (templates in turn; a quarter of
the steps replaced by random actions, as `safari_pretrain demos` perturbs them, and only the
oracle's own steps kept as labels). The same MLP as bench_bc_inputs.py learns the oracle's
action from proprioception + the template (one-hot: what the instruction says to do) alone, and
with the true positions of the named object and of the target pad (base frame): the information
a perfect perception would give. Held out: the last fifth of the episodes. Then the same MLP,
trained on every episode, acts on its own (greedy, no shield) in new layouts: per-step accuracy
says little about whether a policy finishes a task (one action that leaves the state unchanged,
repeated greedily, ends it).

Run from the repository root after `source scripts/env.sh`:
    python bench/bench_bc_oracle_inputs.py [--episodes 120] [--seed 7]
Prints figures only (not a test). About two minutes on 2 cores (physics only, nothing rendered).
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch
from torch import nn

from safari_ros.config import load_config
from safari_ros.evaluation.stats import wilson
from safari_ros.sim import TabletopSim
from safari_ros.sim.oracle import ScriptedOracle
from safari_ros.sim.tasks import TEMPLATES

PERTURB = 0.25  # share of steps replaced by a random primitive (never labels)


def features(sim: TabletopSim, template: int) -> np.ndarray:
    """Proprioception (TCP in dm), the template one-hot and the true object and pad xyz (dm)."""
    obj = sim.target_object_position()
    pad = sim.target_pad_position()
    pad = obj[:2] if pad is None else pad
    tcp_in_dm = sim.proprio() * np.r_[np.ones(18), np.full(3, 10.0)]
    return np.concatenate([tcp_in_dm, np.eye(len(TEMPLATES))[template], obj * 10.0, pad * 10.0])


def collect(sim: TabletopSim, episodes: int, seed: int
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(episode index, features, oracle action) of the oracle's own steps."""
    rng = np.random.default_rng(seed)
    n_moves = sum(1 for a in sim.actions if not a.backup)
    eps, rows, labels = [], [], []
    for ep in range(episodes):
        template = ep % len(TEMPLATES)
        sim.reset(seed=int(rng.integers(2**31)), template=TEMPLATES[template])
        oracle = ScriptedOracle(sim)
        for _ in range(sim.episode_steps):
            action = oracle.act()
            if rng.random() < PERTURB:
                report = sim.step(int(rng.integers(n_moves)))
            else:
                rows.append(features(sim, template))
                eps.append(ep)
                labels.append(action)
                report = sim.step(action)
            if report.success:
                break
    return np.array(eps), np.stack(rows).astype(np.float32), np.array(labels)


def closed_loop(sim: TabletopSim, net: nn.Module, cols: slice, episodes: int, seed: int
                ) -> dict[str, list[bool]]:
    """Success of `net` acting greedily on its own (no oracle, no shield), per template."""
    rng = np.random.default_rng(seed)
    wins: dict[str, list[bool]] = {t: [] for t in TEMPLATES}
    for ep in range(episodes):
        template = ep % len(TEMPLATES)
        sim.reset(seed=int(rng.integers(2**31)), template=TEMPLATES[template])
        success = False
        for _ in range(sim.episode_steps):
            with torch.no_grad():
                x = torch.from_numpy(features(sim, template)[cols].astype(np.float32))
                success = sim.step(int(net(x[None]).argmax())).success
            if success:
                break
        wins[TEMPLATES[template]].append(success)
    return wins


def fit_mlp(x: torch.Tensor, y: torch.Tensor, fit: torch.Tensor, steps: int, seed: int
            ) -> nn.Module:
    """bench_bc_inputs.py's MLP, trained on the rows in `fit`."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(x.shape[1], 256), nn.GELU(), nn.Linear(256, 256), nn.GELU(),
                        nn.Linear(256, int(y.max()) + 1))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-4)
    idx = torch.nonzero(fit).flatten()
    for _ in range(steps):
        i = idx[torch.randint(0, len(idx), (128,))]
        loss = nn.functional.cross_entropy(net(x[i]), y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net


def accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor, rows: torch.Tensor) -> float:
    """Share of `rows` where the MLP picks the oracle's action."""
    with torch.no_grad():
        return float((net(x[rows]).argmax(1) == y[rows]).float().mean())


def main() -> None:
    """Print the table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--episodes", type=int, default=120)
    ap.add_argument("--steps", type=int, default=3000, help="MLP training steps")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--rollouts", type=int, default=60,
                    help="closed-loop episodes per input set (templates in turn)")
    ns = ap.parse_args()
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    sim = TabletopSim(load_config())
    try:
        eps, rows, labels = collect(sim, ns.episodes, ns.seed)
        x, y = torch.from_numpy(rows), torch.from_numpy(labels)
        held = torch.from_numpy(eps >= int(0.8 * ns.episodes))
        fit = ~held
        n_base = 21 + len(TEMPLATES)
        print(f"{len(y)} oracle steps of {ns.episodes} episodes ({int(fit.sum())} train, "
              f"{int(held.sum())} held out); chance {1 / (int(y.max()) + 1):.2f}; closed loop: "
              f"{ns.rollouts} new layouts, greedy, no shield, trained on all episodes")
        print(f"{'inputs':<46} {'train acc':>9} {'held-out':>8}  closed-loop success "
              "(95% Wilson)")
        for name, cols in (("proprio + template", slice(0, n_base)),
                           ("proprio + template + true object and pad xyz", slice(None))):
            net = fit_mlp(x[:, cols], y, fit, ns.steps, ns.seed)
            train, test = (accuracy(net, x[:, cols], y, m) for m in (fit, held))
            # the policy deployed: the same MLP trained on every episode
            wins = closed_loop(sim, fit_mlp(x[:, cols], y, torch.ones_like(fit), ns.steps,
                                            ns.seed), cols, ns.rollouts, ns.seed + 1)
            every = [w for ws in wins.values() for w in ws]
            band = wilson(sum(every), len(every))
            per = ", ".join(f"{t} {sum(ws)}/{len(ws)}" for t, ws in wins.items())
            print(f"{name:<46} {train:>9.3f} {test:>8.3f}  {band.format()} ({per})")
    finally:
        sim.close()


if __name__ == "__main__":
    main()
