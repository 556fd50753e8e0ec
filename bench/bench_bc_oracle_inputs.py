"""What behaviour cloning could reach if the policy knew where things are: the upper bound that
bench_bc_inputs.py's image rows are measured against.

The simulator's scripted oracle acts for `--episodes` episodes (templates in turn; a quarter of
the steps replaced by random actions, as `safari_pretrain demos` perturbs them, and only the
oracle's own steps kept as labels). The same MLP as bench_bc_inputs.py learns the oracle's
action from proprioception + the template (one-hot: what the instruction says to do) alone, and
with the true positions of the named object and of the target pad (base frame): the information
a perfect perception would give. Held out: the last fifth of the episodes.

Run from the repository root after `source scripts/env.sh`:
    python bench/bench_bc_oracle_inputs.py [--episodes 120] [--seed 7]
Prints figures only (not a test). About a minute on 2 cores (physics only, nothing rendered).
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch
from torch import nn

from safari_ros.config import load_config
from safari_ros.sim import TabletopSim
from safari_ros.sim.oracle import ScriptedOracle
from safari_ros.sim.tasks import TEMPLATES

PERTURB = 0.25  # share of steps replaced by a random primitive (never labels)


def collect(sim: TabletopSim, episodes: int, seed: int
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(episode index, features, oracle action) of the oracle's own steps."""
    rng = np.random.default_rng(seed)
    n_moves = sum(1 for a in sim.actions if not a.backup)
    eps, rows, labels = [], [], []
    for ep in range(episodes):
        template = TEMPLATES[ep % len(TEMPLATES)]
        sim.reset(seed=int(rng.integers(2**31)), template=template)
        oracle = ScriptedOracle(sim)
        for _ in range(sim.episode_steps):
            obj = sim.target_object_position()
            pad = sim.target_pad_position()
            pad = obj[:2] if pad is None else pad
            action = oracle.act()
            if rng.random() < PERTURB:
                report = sim.step(int(rng.integers(n_moves)))
            else:
                tcp_in_dm = sim.proprio() * np.r_[np.ones(18), np.full(3, 10.0)]
                rows.append(np.concatenate([tcp_in_dm, np.eye(len(TEMPLATES))[ep % 3],
                                            obj * 10.0, pad * 10.0]))
                eps.append(ep)
                labels.append(action)
                report = sim.step(action)
            if report.success:
                break
    return np.array(eps), np.stack(rows).astype(np.float32), np.array(labels)


def accuracy(x: torch.Tensor, y: torch.Tensor, fit: torch.Tensor, held: torch.Tensor,
             steps: int, seed: int) -> tuple[float, float]:
    """(train, held-out) accuracy of bench_bc_inputs.py's MLP."""
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
    with torch.no_grad():
        return tuple(float((net(x[m]).argmax(1) == y[m]).float().mean()) for m in (fit, held))


def main() -> None:
    """Print the table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--episodes", type=int, default=120)
    ap.add_argument("--steps", type=int, default=3000, help="MLP training steps")
    ap.add_argument("--seed", type=int, default=7)
    ns = ap.parse_args()
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    sim = TabletopSim(load_config())
    try:
        eps, rows, labels = collect(sim, ns.episodes, ns.seed)
    finally:
        sim.close()
    x, y = torch.from_numpy(rows), torch.from_numpy(labels)
    held = torch.from_numpy(eps >= int(0.8 * ns.episodes))
    fit = ~held
    n_base = 21 + len(TEMPLATES)
    print(f"{len(y)} oracle steps of {ns.episodes} episodes ({int(fit.sum())} train, "
          f"{int(held.sum())} held out); chance {1 / (int(y.max()) + 1):.2f}")
    print(f"{'inputs':<48} {'train acc':>9} {'held-out acc':>12}")
    for name, cols in (("proprio + template", slice(0, n_base)),
                       ("proprio + template + true object and pad xyz", slice(None))):
        train, test = accuracy(x[:, cols], y, fit, held, ns.steps, ns.seed)
        print(f"{name:<48} {train:>9.3f} {test:>12.3f}")


if __name__ == "__main__":
    main()
