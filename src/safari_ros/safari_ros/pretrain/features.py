"""Frozen-prefix features of bag steps, computed once and cached on disk.

Pre-training runs only layers k..L plus the heads, so the layer-k tokens of every camera frame
(and the small non-image parts of the state) are computed once per bag and kept in a safetensors
file under the cache directory. The file name is a sha256 over everything the features depend on:
the backbone (backbone_id = architecture + weights hash or random seed), the split layer k, the
image preprocessing (size, mean, std), the depth grid and joint count, the bag's bytes, the topic
map and skip_bad. Change any of them and the cache misses; nothing else can make it stale.
Tokens and instruction embeddings are stored as float16 (as the replay buffer does).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from safari_ros.bags import BagError, Episode, ReadReport, Step, TopicMap, read_episodes
from safari_ros.core import SafariModel, StateBatch, TransitionBatch, depth_lifter, proprio_vector
from safari_ros.core.batch import STATE_FIELDS
from safari_ros.core.language import referring_phrases
from safari_ros.pretrain.labelling import MotionLabeller, merge_label_stats
from safari_ros.robot.kinematics import tcp_pose

__all__ = [
    "CacheStats",
    "DemonstrationSampler",
    "FeatureSet",
    "bag_sha256",
    "default_cache_dir",
    "feature_key",
    "load_bag_features",
    "load_demonstrations",
    "next_rows",
]

log = logging.getLogger(__name__)

FORMAT = "safari-pretrain-features/3"  # bump when what is stored (or how) changes
IMAGE_BATCH = 64  # frames per prefix forward pass
_HALF = ("tokens", "instruction")


def default_cache_dir() -> Path:
    """$XDG_CACHE_HOME/safari_ros/features (~/.cache/... when unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "safari_ros" / "features"


@dataclass
class FeatureSet:
    """Per-step features of one or more bags, as tensors with the step on dimension 0.

    `success` is the episode's outcome; `episode` a global episode number (unique across bags).
    """

    tokens: torch.Tensor  # (S, N, D) float16 layer-k tokens
    depth: torch.Tensor  # (S, G) float32
    proprio: torch.Tensor  # (S, P) float32
    instruction: torch.Tensor  # (S, E) float16
    action: torch.Tensor  # (S,) int64 executed action
    proposed: torch.Tensor  # (S,) int64 the policy's/oracle's choice (= action when unknown)
    reward: torch.Tensor  # (S,) float32
    cost: torch.Tensor  # (S,) float32
    done: torch.Tensor  # (S,) float32
    success: torch.Tensor  # (S,) float32 1 for steps of successful episodes
    episode: torch.Tensor  # (S,) int64
    ground: torch.Tensor  # (S, 2) float32 x, y (m) of the named object, NaN where unknown

    def __len__(self) -> int:
        return int(self.action.shape[0])

    def tensors(self) -> dict[str, torch.Tensor]:
        """Field name -> tensor."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def subset(self, index: torch.Tensor | np.ndarray) -> FeatureSet:
        """The steps at `index`."""
        idx = torch.as_tensor(index, dtype=torch.long)
        return FeatureSet(**{k: v[idx] for k, v in self.tensors().items()})

    @classmethod
    def concat(cls, parts: list[FeatureSet]) -> FeatureSet:
        """Steps of several sets in order; episode numbers are offset to stay unique."""
        if not parts:
            raise ValueError("no features to concatenate")
        offset, shifted = 0, []
        for p in parts:
            shifted.append(dataclasses.replace(p, episode=p.episode + offset))
            offset += int(p.episode.max()) + 1 if len(p) else 0
        return cls(**{f.name: torch.cat([getattr(p, f.name) for p in shifted])
                      for f in dataclasses.fields(cls)})

    def batch(self, index: torch.Tensor | None = None, device: torch.device | str = "cpu",
              next_index: torch.Tensor | None = None) -> TransitionBatch:
        """A TransitionBatch for `pretrain_loss` (all steps when index is None).

        The BC weight (`success`) is 1 only on expert steps of successful episodes: steps where
        the executed action is the proposed one, so neither the demos' random perturbations nor
        the shield's interventions are cloned. next_state is the state of the rows `next_index`
        (next_rows); without it s itself (no copy): pre-training does not look at s'.
        """
        fs = self if index is None else self.subset(index)
        state = StateBatch(fs.tokens, fs.depth, fs.proprio, fs.instruction)
        after = state if next_index is None else StateBatch(
            *(getattr(self, f)[next_index] for f in STATE_FIELDS))
        expert = (fs.action == fs.proposed).float()
        return TransitionBatch(
            state=state, action=fs.action, reward=fs.reward, cost=fs.cost, next_state=after,
            done=fs.done, success=fs.success * expert,
            behaviour_prob=torch.ones(len(fs)), ground=fs.ground,
        ).to(device)


def next_rows(data: FeatureSet) -> torch.Tensor:
    """(S,) the row of each step's next state: the following row of the same episode, the step
    itself where the episode ends (its `done` stops the bootstrap), -1 where it ends without
    `done` (cut short: no next state to bootstrap from)."""
    nxt = torch.arange(1, len(data) + 1)
    same = torch.zeros(len(data), dtype=torch.bool)
    same[:-1] = data.episode[1:] == data.episode[:-1]
    ended = ~same
    nxt[ended] = torch.where(data.done[ended] > 0.5, torch.nonzero(ended).squeeze(1), -1)
    return nxt


def monte_carlo_returns(data: FeatureSet, gamma: float) -> torch.Tensor:
    """(S,) each step's discounted return to the end of its episode, sum_k gamma^k r_{t+k}
    (an episode cut short ends its sum where the log does)."""
    reward = data.reward.double().tolist()
    episode = data.episode.tolist()
    out = [0.0] * len(reward)
    later = 0.0
    for t in range(len(reward) - 1, -1, -1):
        if t == len(reward) - 1 or episode[t + 1] != episode[t]:
            later = 0.0
        later = reward[t] + gamma * later
        out[t] = later
    return torch.tensor(out, dtype=torch.float32)


class DemonstrationSampler:
    """Random transitions (s, a, r, c, s') of demonstration features, for learning online beside
    them (ScapoConfig.demo_share). Steps cut short without a next state are never drawn; a
    transition's `success` is 1 on the expert steps of successful episodes only (what L_BC
    clones: FeatureSet.batch)."""

    def __init__(self, data: FeatureSet, seed: int = 0) -> None:
        nxt = next_rows(data)
        self.rows = torch.nonzero(nxt >= 0).squeeze(1)
        if not len(self.rows):
            raise ValueError("the demonstrations hold no transition with a next state")
        self.data, self.next = data, nxt
        self.gen = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.rows)

    def sample(self, n: int, device: torch.device | str = "cpu") -> TransitionBatch:
        """n transitions drawn uniformly with replacement."""
        idx = self.rows[torch.randint(0, len(self.rows), (n,), generator=self.gen)]
        return self.data.batch(idx, device, next_index=self.next[idx])

    def transitions(self, gamma: float, chunk: int = 256,
                    ) -> Iterator[tuple[TransitionBatch, torch.Tensor]]:
        """Every transition once, in chunks, each with its steps' Monte-Carlo returns
        (monte_carlo_returns): what ScapoLearner.warm_up_critics learns from."""
        returns = monte_carlo_returns(self.data, gamma)
        for start in range(0, len(self.rows), chunk):
            idx = self.rows[start:start + chunk]
            yield self.data.batch(idx, next_index=self.next[idx]), returns[idx]


def load_demonstrations(model: SafariModel, bags: Sequence[str | os.PathLike[str]], *,
                        seed: int = 0, cache_dir: str | os.PathLike[str] | None = None,
                        topic_map: TopicMap | None = None) -> tuple[DemonstrationSampler, bool]:
    """A DemonstrationSampler over demonstration bags' features, read from the cache that
    pre-training filled (computed and cached on a miss), and whether the cache held them all.
    A missing bag raises FileNotFoundError naming it."""
    for bag in bags:
        if not Path(bag).exists():
            raise FileNotFoundError(f"demonstrations bag {bag} not found")
    features, stats = load_bag_features(model, list(bags), topic_map or TopicMap.load(),
                                        cache_dir=cache_dir or default_cache_dir())
    return DemonstrationSampler(features, seed=seed), not stats.misses


@dataclass
class CacheStats:
    """Which bags the cache answered, which were computed, and how many steps were computed."""

    hits: list[str] = field(default_factory=list)
    misses: list[str] = field(default_factory=list)
    steps_computed: int = 0
    files: list[str] = field(default_factory=list)


def bag_sha256(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """sha256 over a bag's files (names relative to the bag, then bytes), in sorted order."""
    root = Path(path)
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
    h = hashlib.sha256()
    for p in files:
        h.update(str(p.relative_to(root) if root.is_dir() else p.name).encode() + b"\0")
        with open(p, "rb") as f:
            while block := f.read(chunk):
                h.update(block)
    return h.hexdigest()


def feature_key(model: SafariModel, bag: str | os.PathLike[str], topic_map: TopicMap,
                skip_bad: bool, labeller: MotionLabeller | None = None,
                ) -> tuple[str, dict[str, Any]]:
    """(cache key, the inputs it hashes) of a bag's features under `model` (and `labeller`,
    for a log whose actions are labelled from its motion)."""
    bb, heads = model.backbone, model.hp.heads
    inputs = {
        "format": FORMAT,
        "backbone_id": model.backbone_id,
        "split_layer_k": model.split_layer_k,
        "preprocess": {"image_size": bb.image_size, "mean": list(bb.image_mean),
                       "std": list(bb.image_std), "dtype": "float16",
                       "roi": dataclasses.asdict(bb.roi) if bb.roi is not None else None},
        "spatial_queries": heads.spatial_queries,  # what an encoded instruction holds
        "depth": {"grid": list(heads.depth_grid), "min_height_m": heads.depth_min_height_m,
                  "camera_mount": model.hp.camera_mount},
        "n_joints": heads.n_joints,
        "bag_sha256": bag_sha256(bag),
        "topic_map": json.loads(json.dumps(dataclasses.asdict(topic_map), default=sorted)),
        "skip_bad": bool(skip_bad),
    }
    if labeller is not None:  # absent otherwise: the keys of recorded-action bags stay as they were
        inputs["labelling"] = labeller.fingerprint(bag)
    text = json.dumps(inputs, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest(), inputs


def _proprio(step: Step, n_joints: int) -> np.ndarray:
    """Joint positions, velocities and the TCP position (forward kinematics of the 7 arm joints:
    bags carry joint states, not the end-effector)."""
    q = step.joint_positions
    velocity = step.joint_velocities if step.joint_velocities.size else np.zeros_like(q)
    return proprio_vector(q, velocity, tcp_pose(q[:7])[0], n_joints)


def _hindsight_ground(episode: Episode) -> np.ndarray:
    """Where the object the instruction names stood, known in hindsight (x, y in m, NaN when
    not): an instruction that names one thing and no destination ("touch the red cube", "pick
    up the purple sphere") succeeds with the gripper at that thing, which stood still until the
    gripper reached it (and then moved with it, at the same x, y), so the TCP's last position in
    a successful episode is where it was all along. An instruction with a destination (a push)
    moves the thing there: no label."""
    nan = np.full(2, np.nan, np.float32)
    if not episode.success or not episode.steps:
        return nan
    if len(referring_phrases(episode.steps[-1].instruction)) != 1:
        return nan
    q = episode.steps[-1].joint_positions
    try:
        return tcp_pose(q[:7])[0][:2].astype(np.float32)
    except (ValueError, IndexError):
        return nan


def _non_image(model: SafariModel, episodes: list[Episode], report: ReadReport,
               skip_bad: bool) -> tuple[list[Step], dict[str, np.ndarray]]:
    """The usable steps and their depth/proprio/label arrays; a step whose joints do not fit the
    configured proprioception is a bad-input error (raised, or counted with skip_bad)."""
    heads = model.hp.heads
    lift = depth_lifter(model.hp)
    steps, rows = [], []
    for e_index, episode in enumerate(episodes):
        success = float(episode.success)
        ground = _hindsight_ground(episode)
        for step in episode.steps:
            try:
                proprio = _proprio(step, heads.n_joints)
            except (ValueError, IndexError) as exc:
                error = BagError(f"joint state does not fit the proprioception: {exc}",
                                 bag=episode.source, stamp_ns=step.stamp_ns)
                if not skip_bad:
                    raise error from exc
                report.skip(error)
                continue
            try:  # a step with no depth or no intrinsics reads "no return" in every cell
                depth = lift(step.depth, step.camera_k)
            except ValueError as exc:
                error = BagError(f"depth cannot be lifted: {exc}", bag=episode.source,
                                 stamp_ns=step.stamp_ns)
                if not skip_bad:
                    raise error from exc
                report.skip(error)
                continue
            action = int(step.action)  # read_episodes keeps only steps with an action
            proposed = action if step.proposed_action is None else int(step.proposed_action)
            steps.append(step)
            rows.append((depth, proprio, action, proposed, step.reward or 0.0, step.cost or 0.0,
                         float(step.done), success, e_index, ground))
    cols = list(zip(*rows, strict=True)) if rows else [[]] * 10
    names = ("depth", "proprio", "action", "proposed", "reward", "cost", "done", "success",
             "episode", "ground")
    dtypes = (np.float32, np.float32, np.int64, np.int64, np.float32, np.float32, np.float32,
              np.float32, np.int64, np.float32)
    arrays = {n: np.asarray(c, dtype=d) for n, c, d in zip(names, cols, dtypes, strict=True)}
    if not rows:  # keep the feature dimensions of an empty bag
        arrays["depth"] = arrays["depth"].reshape(0, heads.depth_dim)
        arrays["proprio"] = arrays["proprio"].reshape(0, heads.proprio_dim)
        arrays["ground"] = arrays["ground"].reshape(0, 2)
    return steps, arrays


@torch.no_grad()
def compute_bag_features(model: SafariModel, bag: str | os.PathLike[str], topic_map: TopicMap,
                         *, skip_bad: bool, report: ReadReport,
                         labeller: MotionLabeller | None = None) -> FeatureSet:
    """Read a bag (its actions labelled from its motion by `labeller` when given) and run the
    frozen prefix on its frames (no cache)."""
    if labeller is not None:
        episodes = labeller.episodes(bag, topic_map, skip_bad=skip_bad, report=report)
    else:
        episodes = read_episodes(bag, topic_map, skip_bad=skip_bad, report=report)
    steps, arrays = _non_image(model, episodes, report, skip_bad)
    bb = model.backbone
    chunks = [torch.zeros(0, bb.num_tokens, bb.width, dtype=torch.float16)]
    for start in range(0, len(steps), IMAGE_BATCH):
        rgb = np.stack([s.rgb for s in steps[start:start + IMAGE_BATCH]])
        chunks.append(model.prefix(bb.preprocess(rgb)).to("cpu", torch.float16))
    tokens = torch.cat(chunks)
    texts = [s.instruction for s in steps]
    instruction = (model.encode_instruction(texts).to("cpu", torch.float16) if texts
                   else torch.zeros(0, model.instruction_dim, dtype=torch.float16))
    return FeatureSet(tokens=tokens, instruction=instruction,
                      **{k: torch.from_numpy(v) for k, v in arrays.items()})


def _read_cache(path: Path) -> tuple[FeatureSet, dict[str, Any]] | None:
    """A cached FeatureSet and its read report, or None when the file is absent or unreadable."""
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        return FeatureSet(**tensors), json.loads(meta.get("report", "{}"))
    except (OSError, SafetensorError, TypeError, ValueError) as exc:
        log.warning("feature cache %s unreadable (%s); recomputing", path, exc)
        return None


def _write_cache(path: Path, features: FeatureSet, inputs: dict[str, Any],
                 report: ReadReport) -> None:
    """Atomically write features + what they were computed from + what the read skipped."""
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"inputs": json.dumps(inputs), "report": json.dumps(
        {"skipped": dict(report.skipped), "problems": report.problems, "labels": report.labels})}
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    save_file({k: v.contiguous() for k, v in features.tensors().items()}, str(tmp), metadata=meta)
    os.replace(tmp, path)


def load_bag_features(
    model: SafariModel,
    bags: list[str | os.PathLike[str]],
    topic_map: TopicMap,
    *,
    cache_dir: str | os.PathLike[str],
    skip_bad: bool = False,
    report: ReadReport | None = None,
    compute: bool = True,
    labeller: MotionLabeller | None = None,
) -> tuple[FeatureSet, CacheStats]:
    """Features of all `bags` (concatenated), from the cache where possible.

    A miss reads the bag (read_episodes, or with a `labeller` the log labelled from its motion;
    skip_bad passed through) and runs the prefix, then writes the cache. On a hit the bag is not
    read; what the original read skipped (and labelled) is added to `report` from the cache
    file, so the counts do not depend on the cache; `report.by_bag` keeps them per bag.
    compute=False raises on a miss (DDP ranks other than 0 only read what rank 0 wrote).
    """
    report = report if report is not None else ReadReport()
    stats, parts = CacheStats(), []
    for bag in bags:
        key, inputs = feature_key(model, bag, topic_map, skip_bad, labeller)
        path = Path(cache_dir) / f"{key}.safetensors"
        cached = _read_cache(path)
        if cached is not None:
            features, saved = cached
            stats.hits.append(str(bag))
            _merge(report, ReadReport(bags=[str(bag)], skipped=Counter(saved.get("skipped", {})),
                                      problems=list(saved.get("problems", [])),
                                      labels=dict(saved.get("labels", {}))))
        elif not compute:
            raise FileNotFoundError(f"feature cache {path} for bag {bag} is missing")
        else:
            bag_report = ReadReport()
            features = compute_bag_features(model, bag, topic_map, skip_bad=skip_bad,
                                             report=bag_report, labeller=labeller)
            _write_cache(path, features, inputs, bag_report)
            _merge(report, bag_report)
            stats.misses.append(str(bag))
            stats.steps_computed += len(features)
        stats.files.append(str(path))
        parts.append(features)
    features = FeatureSet.concat(parts)
    report.steps = len(features)
    report.episodes = int(torch.unique(features.episode).numel())
    return features, stats


def _merge(into: ReadReport, part: ReadReport) -> None:
    """Add one bag's report to the total, and keep what it skipped under its name."""
    into.bags.extend(part.bags)
    into.messages += part.messages
    into.skipped.update(part.skipped)
    room = into.MAX_PROBLEMS - len(into.problems)
    into.problems.extend(part.problems[: max(room, 0)])
    merge_label_stats(into.labels, part.labels)
    for bag in part.bags[:1]:  # one bag per part (the reader lists the bag it opened)
        into.by_bag[bag] = {"skipped": dict(part.skipped),
                            "problems": part.problems[: part.PROBLEMS_PER_BAG]}
