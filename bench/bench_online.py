"""Does online SCAPO improve on the pre-trained adapters? From a checkpoint (pre-training's) and
the demonstrations it was trained on: --episodes online episodes in the harness's loop
(OnlineLoop: the stack's shield, pi sampled as policy_node does, one SCAPO update per environment
step, demonstrations in each batch per learning.scapo.demo_share), then the checkpoint (v1) and
the final adapters deployed greedily through the stack's shield on the same fresh layouts of the
training instructions (evaluation.deployment), with the paired gain and the successes per verb.

    python bench/bench_online.py CHECKPOINT --demos BAG [BAG ...] [--config C] [--episodes 20]
        [--online-seed 4000000] [--deploy-episodes 60] [--set demo_share=0 ...]
        [--v1-from EARLIER_OUT/deployment.json]

--set overrides learning.scapo keys (demo_share=0: the robot's own replay only). Seeds are
development seeds: online episode layouts from --online-seed, deployment from --seed-base
(2,100,000,000); keep both away from the main job's run.deploy_seed_base and from the
demonstrations' run.demo_seed. Prints figures only (not a test). On 2 cores about 6 minutes of
online learning and 2.5 per checkpoint for 60 deployment episodes.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import Counter

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

import torch
import yaml

from safari_ros.config import load_config
from safari_ros.core import ReplayBuffer, ScapoLearner, build_model, save_checkpoint
from safari_ros.core.checkpoint import load_checkpoint
from safari_ros.core.hparams import learning_config
from safari_ros.evaluation.deployment import (
    STACK_SHIELD,
    DeploymentSeeds,
    evaluate_deployment,
)
from safari_ros.evaluation.loop import (
    EpisodeRecord,
    OnlineLoop,
    ShieldGate,
    learned_policy,
    make_envs,
)
from safari_ros.evaluation.models import perceive
from safari_ros.evaluation.stats import newcombe_paired_difference
from safari_ros.pretrain import load_demonstrations

N_ENVS = 4


def learn_online(cfg: dict, checkpoint: str, demos: list[str], episodes: int, seed: int,
                 out: str) -> str:
    """Online SCAPO from `checkpoint` (anchored to it, as learner_node is); saves and returns
    the final adapters' path."""
    hp = learning_config(cfg)
    torch.manual_seed(0)
    model = build_model(cfg)
    load_checkpoint(checkpoint, model)
    learner = ScapoLearner(model, hp.scapo)
    if hp.scapo.anchor_kl > 0:
        learner.anchor()
    sampler = None
    if demos and hp.scapo.demo_share > 0:
        sampler, _ = load_demonstrations(model, demos, seed=hp.replay.sampling_seed)
        print(f"learning beside {len(sampler)} demonstration transitions")
        if hp.scapo.critic_warmup_steps:
            t0 = time.perf_counter()
            figures = learner.warm_up_critics(sampler.transitions(hp.scapo.gamma),
                                              hp.scapo.critic_warmup_steps)
            print(f"critics warmed up in {time.perf_counter() - t0:.0f} s: "
                  + ", ".join(f"{k} {v:.3g}" for k, v in figures.items()), flush=True)
    envs = make_envs(cfg, "train", N_ENVS)
    loop = OnlineLoop(model, envs, ShieldGate(cfg, STACK_SHIELD, hp.scapo.gamma, N_ENVS),
                      policy=learned_policy(model), perceive=lambda rgb: perceive(model, rgb),
                      learner=learner, replay=ReplayBuffer.from_config(hp.replay,
                                                                      model.backbone_id),
                      sampling=True, seed=0, demos=None if sampler is None else sampler.sample)
    started = time.perf_counter()

    def line(r: EpisodeRecord) -> None:
        print(f"online {r.episode:3d} {r.instruction.split()[0]:6s} success {int(r.success)} "
              f"return {r.ret:6.2f} cost {r.cost:.0f} shield {r.interventions:2d} "
              f"H {r.policy_entropy:.2f} moves {r.motion_share:.2f} updates {r.updates} "
              f"lambda {r.lagrange:.2f} ({time.perf_counter() - started:.0f} s)", flush=True)

    records = loop.run(episodes, seed, line)
    for env in envs:
        env.close()
    print(f"online: {sum(r.success for r in records)}/{len(records)} successes, "
          f"{loop.updates} updates, {learner.dropped_policy_steps} policy steps dropped, "
          f"{time.perf_counter() - started:.0f} s")
    path = os.path.join(out, "final.safetensors")
    save_checkpoint(path, model, 2, learner.updates)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint", help="pre-trained adapters (v1)")
    ap.add_argument("--demos", nargs="*", default=[], help="the demonstrations' bag(s)")
    ap.add_argument("--config", default=None, help="config YAML (default: the repository's)")
    ap.add_argument("--episodes", type=int, default=20)
    ap.add_argument("--online-seed", type=int, default=4_000_000)
    ap.add_argument("--deploy-episodes", type=int, default=60)
    ap.add_argument("--seed-base", type=int, default=2_100_000_000)
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="learning.scapo overrides")
    ap.add_argument("--out", default="runs/bench_online",
                    help="where the final adapters and deployment.json go")
    ap.add_argument("--v1-from", metavar="DEPLOYMENT_JSON",
                    help="v1's deployment from an earlier run's deployment.json (its greedy "
                         "episodes do not change with the online run): deploy the final "
                         "adapters only and pair them with it")
    args = ap.parse_args()
    cfg = load_config(args.config)
    for item in args.set:
        key, value = item.split("=", 1)
        cfg["learning"]["scapo"][key] = yaml.safe_load(value)
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(2)
    final = learn_online(cfg, args.checkpoint, args.demos, args.episodes, args.online_seed,
                         args.out)
    torch.set_num_threads(1)  # the deployment's setting (run.deploy_torch_threads)
    checkpoints = {"final": final} if args.v1_from else {"v1": args.checkpoint, "final": final}
    section = evaluate_deployment(cfg, checkpoints,
                                  DeploymentSeeds(args.seed_base, args.deploy_episodes),
                                  splits=("train",))
    if args.v1_from:
        with open(args.v1_from) as f:
            v1 = json.load(f)["splits"]["train"]["v1"]
        split = section["splits"]["train"]
        final_eps = split["final"]["episodes"]
        if [e["env_seed"] for e in v1["episodes"]] != [e["env_seed"] for e in final_eps]:
            raise SystemExit(f"{args.v1_from} deployed other seeds: no pairs")
        gain = newcombe_paired_difference([bool(e["success"]) for e in final_eps],
                                          [bool(e["success"]) for e in v1["episodes"]])
        section["splits"]["train"] = {"v1": v1, **split, "gain": gain.to_dict()}
    with open(os.path.join(args.out, "deployment.json"), "w") as f:
        json.dump(section, f, indent=1)
    for label, s in section["splits"]["train"].items():
        if label == "gain":
            print(f"gain final - v1: {s['mean']:+.2f} [{s['low']:+.2f}, {s['high']:+.2f}]")
            continue
        per, tried = Counter(), Counter()
        for e in s["episodes"]:
            verb = e["instruction"].split()[0]
            per[verb] += int(e["success"])
            tried[verb] += 1
        b, ok = s["behaviour"], s["success"]
        verbs = ", ".join(f"{v} {per[v]}/{tried[v]}" for v in sorted(tried))
        print(f"{label:5s} success {ok['mean']:.2f} [{ok['low']:.2f}, {ok['high']:.2f}] "
              f"({verbs}); moves {b['motion_share']['mean']:.2f}; refused per episode: hard "
              f"{b['refused_hard_per_episode']['mean']:.1f}, C "
              f"{b['refused_learned_per_episode']['mean']:.1f}")


if __name__ == "__main__":
    main()
