"""The main job: the tabletop stack learning online in the simulator, then a report.

First, unless a checkpoint is given, it pre-trains the adapters offline from oracle
demonstrations recorded as rosbag2 MCAP bags (safari_pretrain demos, run.demo_workers processes
side by side, + train), as a robot would pre-train from its logs before the arm moves. Then it
starts the node graph of the config (sim, perception, policy, shield, learner, which learns
beside those demonstrations) as separate processes, switches the shield to `learn`, runs
episodes through the RunEpisode action, prints one line per episode, has the learner save its
final adapters and stops the stack. Last, without ROS, it deploys the pre-trained adapters (v1)
and the final ones greedily through the stack's shield on the same fresh seeds of both task
splits (safari_ros.evaluation.deployment), prints that table and writes run_dir/report.json and
run_dir/learning_curves.png.

    safari_tabletop [--episodes N] [--pretrain-episodes N] [--deploy-episodes N]
                    [--config PATH] [--run-dir DIR] [name:=value ...]
"""

from __future__ import annotations

import argparse
import copy
import logging
import os
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import torch

from safari_ros.bringup import Supervisor, interrupt_on_signals, parse_launch_args
from safari_ros.config import load_config
from safari_ros.evaluation.deployment import (
    DeploymentSeeds,
    check_disjoint,
    check_targets,
    evaluate_deployment,
)
from safari_ros.graph import node_specs
from safari_ros.pretrain import cli as pretrain_cli
from safari_ros.report import deployment_table, write_report

log = logging.getLogger("safari_tabletop")


class StackClient:
    """The operator's side: mode changes, episodes, learner status (an rclpy node)."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        import rclpy
        from rclpy.action import ActionClient
        from rclpy.node import Node
        from rclpy.signals import SignalHandlerOptions

        from safari_msgs.action import RunEpisode
        from safari_msgs.msg import Feedback, LearnerStatus
        from safari_msgs.srv import SaveAdapters, SetMode

        self.rclpy, self.RunEpisode, self.SetMode = rclpy, RunEpisode, SetMode
        self.SaveAdapters = SaveAdapters
        # rclpy's handler would shut the context down under us; main() handles the signals
        rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
        self.node = Node("safari_tabletop")
        self.status: Any = None
        self.cost_sources: dict[int, Counter[str]] = defaultdict(Counter)  # by episode id
        self.last_episode = 0
        self.node.create_subscription(Feedback, cfg["topics"]["feedback"], self._on_feedback, 50)
        self.node.create_subscription(LearnerStatus, cfg["topics"]["learner_status"],
                                      self._on_status, 10)
        self.set_mode_client = self.node.create_client(SetMode, "/safari/set_mode")
        self.save_client = self.node.create_client(SaveAdapters, "/safari/save_adapters")
        self.episodes = ActionClient(self.node, RunEpisode, "/safari/run_episode")

    def _on_status(self, msg: Any) -> None:
        self.status = msg

    def _on_feedback(self, msg: Any) -> None:
        self.last_episode = max(self.last_episode, int(msg.episode_id))
        self.cost_sources[msg.episode_id].update(
            name for name, active in zip(msg.cost_sources, msg.cost_active, strict=False)
            if active)

    def wait_ready(self, timeout_s: float, alive: Any) -> None:
        """Until the shield, the simulator and the learner answer (or a node dies)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            alive()
            if (self.set_mode_client.service_is_ready() and self.episodes.server_is_ready()
                    and self.save_client.service_is_ready() and self.status is not None):
                return
            self.rclpy.spin_once(self.node, timeout_sec=0.2)
        raise TimeoutError(f"the stack did not come up within {timeout_s:.0f} s")

    def call(self, future: Any, timeout_s: float, alive: Any) -> Any:
        """Spin until a future completes; raises if a node dies or time runs out."""
        deadline = time.monotonic() + timeout_s
        while not future.done():
            alive()
            if time.monotonic() > deadline:
                raise TimeoutError("no answer from the stack")
            self.rclpy.spin_once(self.node, timeout_sec=0.1)
        return future.result()

    def spin_for(self, seconds: float) -> None:
        """Process callbacks for a while."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.rclpy.spin_once(self.node, timeout_sec=0.05)

    def set_mode(self, mode: int, alive: Any) -> None:
        """SetMode on the shield."""
        self.call(self.set_mode_client.call_async(self.SetMode.Request(mode=mode)), 10, alive)

    def save_adapters(self, alive: Any) -> str:
        """Have the learner write its adapters now (its next version); returns the path. Its
        periodic checkpoints lag the last updates by up to checkpoint_every_updates."""
        response = self.call(self.save_client.call_async(self.SaveAdapters.Request()), 120,
                             alive)
        if not response.success:
            raise RuntimeError(f"the learner could not save its adapters: {response.message}")
        return str(response.checkpoint.path)

    def run_episode(self, alive: Any, timeout_s: float = 600) -> Any:
        """One learning episode (the simulator samples the task)."""
        handle = self.call(self.episodes.send_goal_async(self.RunEpisode.Goal(learn=True)), 30,
                           alive)
        if not handle.accepted:
            raise RuntimeError("RunEpisode goal rejected")
        return self.call(handle.get_result_async(), timeout_s, alive).result

    def close(self) -> None:
        """Leave the graph."""
        self.node.destroy_node()
        self.rclpy.try_shutdown()


PREVIOUS_RUN_ITEMS = ("replay", "checkpoints", "logs", "report.json", "learning_curves.png")


def set_aside_previous_run(run_dir: Path) -> Path | None:
    """Move an earlier run's replay, checkpoints, logs and report under
    run_dir/previous/<time>/, so that this run learns from its own experience only (the
    learner node restores whatever replay it finds) and nothing is deleted. Returns the folder,
    or None when there was nothing to move."""
    present = [run_dir / name for name in PREVIOUS_RUN_ITEMS if (run_dir / name).exists()]
    if not present:
        return None
    target = run_dir / "previous" / time.strftime("%Y%m%d-%H%M%S")
    while target.exists():  # two runs within a second
        target = target.with_name(target.name + "_")
    target.mkdir(parents=True)
    for item in present:
        item.rename(target / item.name)
    return target


def main(argv: list[str] | None = None) -> int:
    """Run the stack for N learning episodes and write the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=None, help="config YAML (default: tabletop.yaml)")
    parser.add_argument("--episodes", type=int, default=None,
                        help="learning episodes (default: run.episodes in the config)")
    parser.add_argument("--pretrain-episodes", type=int, default=None,
                        help="oracle demonstrations per task template for offline pre-training "
                             "(default: run.pretrain_episodes_per_template; 0: none)")
    parser.add_argument("--deploy-episodes", type=int, default=None,
                        help="deployment episodes per split after learning, for the pre-trained "
                             "and the final adapters (default: run.deploy_episodes; 0: none)")
    parser.add_argument("--run-dir", type=Path, default=None,
                        help="output folder (default: the run_dir launch argument)")
    parser.add_argument("--keep-replay", action="store_true",
                        help="let the learner restore the replay of earlier runs in the run "
                             "directory (default: they are moved to <run-dir>/previous/)")
    parser.add_argument("arguments", nargs="*", help="launch arguments, name:=value")
    ns = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(name)s] %(message)s")
    cfg = load_config(ns.config)
    given = parse_launch_args(ns.arguments)
    if ns.run_dir is not None:
        given["run_dir"] = str(ns.run_dir)
    given.setdefault("use_sim", "true")
    run_dir = Path(given.get("run_dir", cfg["launch_arguments"]["run_dir"]["default"]))
    run_cfg = cfg.get("run", {})
    episodes = ns.episodes or int(run_cfg.get("episodes", 30))
    demos = (ns.pretrain_episodes if ns.pretrain_episodes is not None
             else int(run_cfg.get("pretrain_episodes_per_template", 0)))
    deploy_episodes = (ns.deploy_episodes if ns.deploy_episodes is not None
                       else int(run_cfg.get("deploy_episodes", 20)))
    demo_seed = int(run_cfg.get("demo_seed", 0))
    seeds = DeploymentSeeds(int(run_cfg.get("deploy_seed_base", 1_000_000_000)),
                            max(0, deploy_episodes))
    # Before anything runs: no deployment episode may replay a scene learned from.
    try:
        check_disjoint(seeds, online_and_demo_seeds(cfg, episodes, demo_seed))
    except ValueError as exc:
        raise SystemExit(f"safari_tabletop: {exc}") from exc
    pretrain_meta: dict[str, Any] = {}
    if demos > 0 and not given.get("checkpoint"):
        given["checkpoint"], pretrain_meta = pretrain(cfg, run_dir / "pretrain", demos,
                                                      int(run_cfg.get("pretrain_epochs", 10)),
                                                      demo_seed)
        # the learner learns beside the demonstrations it was pre-trained on (demo_share)
        given.setdefault("demonstrations", pretrain_meta["demonstrations"])
    if not ns.keep_replay:
        moved = set_aside_previous_run(run_dir)
        if moved is not None:
            log.info("the previous run's replay, checkpoints and report are now in %s", moved)
    specs = node_specs(cfg, given)
    sup = Supervisor(specs, run_dir, log_dir=run_dir / "logs")

    def alive() -> None:
        dead = sup.dead()
        if dead:
            raise RuntimeError(f"node(s) exited: {dead}; logs in {run_dir / 'logs'}")

    rows: list[dict[str, Any]] = []
    started = time.monotonic()
    client = None
    code = 0
    final_checkpoint = ""
    interrupt_on_signals()  # Ctrl-C or kill: stop the stack and write the report so far
    try:
        sup.start()
        client = StackClient(cfg)
        log.info("waiting for the stack (node logs in %s)", run_dir / "logs")
        client.wait_ready(float(cfg.get("run", {}).get("startup_timeout_s", 300)), alive)
        client.set_mode(client.SetMode.Request.LEARN, alive)
        violations = 0
        for episode in range(1, episodes + 1):
            result = client.run_episode(alive)
            client.spin_for(0.3)  # let the learner's status catch up with the episode
            status = client.status
            violations += round(result.episode_cost)
            rows.append({
                "episode": episode, "success": bool(result.success),
                "return": float(result.episode_return), "cost": float(result.episode_cost),
                "steps": int(result.steps), "interventions": int(result.interventions),
                "cumulative_violations": violations,
                "lagrange_multiplier": float(status.lagrange_multiplier),
                "updates": int(status.updates), "adapter_version": int(status.adapter_version),
                "policy_entropy": round(float(status.policy_entropy), 3),
                "entropy_coef": round(float(status.entropy_coef), 4),
                "wall_s": round(time.monotonic() - started, 2),
                # Steps of this episode on which each cost source fired.
                "cost_sources": dict(client.cost_sources[client.last_episode]),
            })
            rate = sum(r["success"] for r in rows[-10:]) / len(rows[-10:])
            print(f"episode {episode:4d}/{episodes}  success(10) {rate:4.2f}  return "
                  f"{result.episode_return:7.3f}  cost {result.episode_cost:4.0f}  lambda "
                  f"{status.lagrange_multiplier:6.3f}  interventions {result.interventions:3d}  "
                  f"updates {status.updates:5d}  entropy {status.policy_entropy:4.2f}  "
                  f"adapters v{status.adapter_version}"
                  + (f"  costs {rows[-1]['cost_sources']}" if rows[-1]["cost_sources"] else ""),
                  flush=True)
        client.set_mode(client.SetMode.Request.IDLE, alive)
        if seeds.episodes:
            final_checkpoint = client.save_adapters(alive)
    except KeyboardInterrupt:
        log.warning("interrupted: stopping the stack and writing what there is")
        code = 130
    except (RuntimeError, TimeoutError) as exc:
        log.error("%s", exc)
        code = 1
    finally:
        if client is not None:
            client.close()
        sup.stop()
    online_s = round(time.monotonic() - started, 1)
    deployment = None
    if code == 0 and final_checkpoint:
        try:
            deployment = deploy(cfg, given, seeds, final_checkpoint)
        except KeyboardInterrupt:
            log.warning("interrupted during the deployment evaluation: reporting without it")
            code = 130
        except Exception:  # the online episodes' report is still worth writing
            log.exception("the deployment evaluation failed: reporting without it")
            code = 1
    meta = {"config": cfg["_path"], "launch_arguments": given, "pretrain": pretrain_meta,
            "backbone": f"{cfg['learning']['backbone']['architecture']} "
                        f"({cfg['learning']['backbone']['weights'] or 'random init'})",
            "online_wall_s": online_s, "wall_s": round(time.monotonic() - started, 1)}
    paths = write_report(rows, run_dir, meta, deployment)
    if deployment is not None:
        print(deployment_table(deployment))
    print(f"report: {paths['json']}  curves: {paths['png']}")
    return code


def online_and_demo_seeds(cfg: dict[str, Any], episodes: int,
                          demo_seed: int) -> dict[str, range | set[int]]:
    """The seeds the other phases use: sim_node seeds episode e's scene with its `seed`
    parameter + e; the demonstrations' bag i seeds its generator with demo_seed + i."""
    first = int(cfg["nodes"]["sim_node"]["parameters"].get("seed", 0))  # sim_node's default: 0
    return {"online episodes (sim_node)": range(first, first + episodes),
            "demonstrations": set(range(demo_seed, demo_seed + demo_workers(cfg)))}


def deploy(cfg: dict[str, Any], given: dict[str, str], seeds: DeploymentSeeds,
           final_checkpoint: str) -> dict[str, Any]:
    """The deployment section: v1 (the checkpoint the nodes started from, or their fresh
    adapters) and the learner's final adapters, on this machine's device, without ROS."""
    from safari_ros.evaluation.compute import resolve_device

    cfg = copy.deepcopy(cfg)
    if given.get("weights"):  # as the nodes apply the launch argument (relative to the cwd)
        cfg["learning"]["backbone"]["weights"] = str(Path(given["weights"]).expanduser()
                                                     .resolve())
    run_cfg = cfg.get("run", {})
    device = resolve_device(given.get("device", cfg["launch_arguments"]["device"]["default"]))
    log.info("deployment: %d episodes per split for v1 and the final adapters", seeds.episodes)

    done: Counter[tuple[str, str]] = Counter()

    def progress(label: str, split: str, rec: Any) -> None:
        done[label, split] += 1
        log.info("deployed %s on %s: %d/%d episodes, last: success %d cost %.0f "
                 "interventions %d", label, split, done[label, split], seeds.episodes,
                 rec.success, rec.cost, rec.interventions)

    threads = torch.get_num_threads()
    if device.type == "cpu" and run_cfg.get("deploy_torch_threads"):
        torch.set_num_threads(int(run_cfg["deploy_torch_threads"]))
    used = torch.get_num_threads()
    try:
        section = evaluate_deployment(
            cfg, {"v1": given.get("checkpoint") or None, "final": final_checkpoint}, seeds,
            num_envs=int(run_cfg.get("deploy_num_envs", 4)), device=device,
            init_seed=int(cfg["nodes"]["policy_node"]["parameters"].get("seed", 0)),
            on_episode=progress)
    finally:
        torch.set_num_threads(threads)
    section["protocol"]["torch_threads"] = used
    check_targets(section, run_cfg.get("deploy_targets", {}))
    return section


def pretrain(cfg: dict[str, Any], folder: Path, episodes_per_template: int,
             epochs: int, demo_seed: int = 0) -> tuple[str, dict[str, Any]]:
    """Oracle demonstrations -> bag -> offline pre-training; returns (checkpoint, its report).

    Both are reused by the next run unless what made them changed (the config sections they
    depend on, their sizes or the package version): a stale bag or checkpoint is redone."""
    import hashlib
    import json
    import shutil

    import safari_ros

    workers = demo_workers(cfg)
    made_of = {k: cfg[k] for k in ("actions", "safety", "sim", "learning")}
    made_of.update(episodes=episodes_per_template, epochs=epochs, demo_seed=demo_seed,
                   workers=workers, version=safari_ros.__version__)
    fingerprint = hashlib.sha256(
        json.dumps(made_of, sort_keys=True, default=str).encode()).hexdigest()
    stamp = folder / "fingerprint"
    if folder.exists() and (not stamp.exists() or stamp.read_text().strip() != fingerprint):
        log.info("%s was made by another config or version: recording and training again", folder)
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stamp.write_text(fingerprint + "\n")
    # bag -> its episodes per template (a worker left without episodes records no bag)
    parts = {folder / "demos" / f"part-{i}": n for i in range(workers)
             if (n := episodes_per_template // workers + (i < episodes_per_template % workers))}
    bags = list(parts)
    checkpoint = folder / "train" / "adapters.safetensors"
    # written once every part is recorded: an interrupted recording closes its bag (a readable
    # one, with fewer episodes), so the bags' presence says nothing
    recorded = folder / "demos" / "recorded"
    if not recorded.exists():
        shutil.rmtree(folder / "demos", ignore_errors=True)
        log.info("recording %d oracle demonstrations per template to %s (%d processes)",
                 episodes_per_template, folder / "demos", len(bags))
        record_demos(cfg["_path"], parts, demo_seed)
        recorded.write_text("\n".join(b.name for b in bags) + "\n")
    if not checkpoint.exists():
        log.info("offline pre-training (%d epochs) on %s", epochs, folder / "demos")
        if pretrain_cli.main(["train", "--config", cfg["_path"], *map(str, bags),
                              "--out", str(checkpoint.parent), "--epochs", str(epochs),
                              "--plot", "--resume"]):
            raise SystemExit("offline pre-training failed")
    report = checkpoint.parent / "pretrain_report.json"
    summary = json.loads(report.read_text()) if report.exists() else {}
    return str(checkpoint.resolve()), {
        "checkpoint": str(checkpoint),
        "demonstrations": os.pathsep.join(str(b.resolve()) for b in bags),
        "heldout": summary.get("heldout", summary)}


def demo_workers(cfg: dict[str, Any]) -> int:
    """Processes that record the demonstrations side by side (`run.demo_workers`)."""
    workers = int(cfg.get("run", {}).get("demo_workers", 1))
    if workers < 1:
        raise SystemExit(f"safari_tabletop: run.demo_workers must be >= 1, got {workers}")
    return workers


def record_demos(config: str, parts: dict[Path, int], demo_seed: int) -> None:
    """Record the demonstrations as one bag per process (`parts`: bag -> episodes per
    template), side by side: the simulator renders on one core, so two processes on two cores
    take about half the time. Bag i draws its episodes from a generator seeded demo_seed + i."""
    procs = [subprocess.Popen([sys.executable, "-m", "safari_ros.pretrain.cli", "demos",
                               "--config", config, "--out", str(bag), "--seed",
                               str(demo_seed + i), "--episodes-per-template", str(n)])
             for i, (bag, n) in enumerate(parts.items())]
    try:
        codes = [p.wait() for p in procs]
    finally:  # interrupted: the recorders go too
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait()
    if any(codes):
        raise SystemExit(f"recording the demonstrations failed (exit codes {codes})")


if __name__ == "__main__":
    sys.exit(main())
