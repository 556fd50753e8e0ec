"""Typed view of the `learning:` section of config/tabletop.yaml.

Every hyper-parameter of the model, the pre-training loss and SCAPO is read from the YAML (the one
source of truth); nothing here has a default that the YAML does not also state, except the few
keys marked optional. Unknown keys are refused so that a typo never silently falls back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from safari_ros.config import ConfigError
from safari_ros.core.features import DEPTH_CHANNELS

__all__ = [
    "AdapterConfig",
    "BackboneConfig",
    "HeadsConfig",
    "LearningConfig",
    "PretrainConfig",
    "RegionOfInterest",
    "ReplayConfig",
    "ScapoConfig",
    "learning_config",
]


def _build(cls: type, data: dict[str, Any] | None, where: str) -> Any:
    """Instantiate dataclass `cls` from `data`, refusing unknown and missing keys by name."""
    data = dict(data or {})
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")
    required = [
        n
        for n, f in known.items()
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    missing = [n for n in required if n not in data]
    if missing:
        raise ConfigError(f"{where}: missing key(s) {missing}")
    try:
        return cls(**data)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc


@dataclass(frozen=True)
class RegionOfInterest:
    """A window of the camera image in pixels, with sensor_msgs/RegionOfInterest's field names,
    given for images of image_width x image_height; the same camera at another resolution (the
    tests' small renders) gets the window scaled to it."""

    x_offset: int
    y_offset: int
    width: int
    height: int
    image_width: int
    image_height: int

    def __post_init__(self) -> None:
        for name in ("x_offset", "y_offset", "width", "height", "image_width", "image_height"):
            object.__setattr__(self, name, int(getattr(self, name)))
        if self.x_offset < 0 or self.y_offset < 0 or self.width < 1 or self.height < 1:
            raise ValueError(f"roi needs offsets >= 0 and a size >= 1, got {self}")
        if self.x_offset + self.width > self.image_width or \
                self.y_offset + self.height > self.image_height:
            raise ValueError(f"roi {self} does not fit its {self.image_width}x"
                             f"{self.image_height} image")


@dataclass(frozen=True)
class BackboneConfig:
    """The frozen open_clip model: architecture name, local weights file or random init."""

    architecture: str
    weights: str = ""  # local .safetensors/.pt/.bin; "" = random init (logged as a warning)
    image_size: int = 224
    random_init_seed: int = 0  # seed of the random init when weights == ""
    image_mean: tuple[float, float, float] | None = None  # None = open_clip's for the arch
    image_std: tuple[float, float, float] | None = None
    model_config_dir: str = ""  # extra open_clip model-config JSONs (custom architectures)
    # The window of the camera image the backbone sees (None = the whole image): small objects
    # need pixels, and the task's region is a fraction of a camera's view.
    roi: RegionOfInterest | None = None

    def __post_init__(self) -> None:
        if isinstance(self.roi, dict):
            object.__setattr__(self, "roi", _build(RegionOfInterest, self.roi,
                                                   "learning.backbone.roi"))


@dataclass(frozen=True)
class AdapterConfig:
    """Where the TaskAdapters / SafetyAdapters go and their bottleneck."""

    task_layers: tuple[int, ...]
    safety_layers: tuple[int, ...]
    bottleneck: int
    activation: str = "gelu"  # gelu / relu / silu / tanh

    def __post_init__(self) -> None:
        object.__setattr__(self, "task_layers", tuple(int(i) for i in self.task_layers))
        object.__setattr__(self, "safety_layers", tuple(int(i) for i in self.safety_layers))
        if self.bottleneck < 1:
            raise ValueError("bottleneck must be >= 1")


@dataclass(frozen=True)
class HeadsConfig:
    """Policy / critic heads and the non-image parts of the state."""

    hidden: int
    # Cells of the lifted depth (core/features.lift_depth): the backbone's patch grid, so that
    # the spatial readout's attention over patches weights each patch's points.
    depth_grid: tuple[int, int]
    n_joints: int  # proprio = joint positions (n) + velocities (n) + ee position (3)
    # The TCP position enters the heads in units of this length: rad and rad/s are O(1) but a
    # table contact is 2 cm away, which in metres the fusion MLP barely sees.
    tcp_unit_m: float = 0.1
    # Instruction-steered queries over the patch embeddings (each adds its soft-argmax image
    # position and peak attention to the fused state); 0 = the pooled embedding only.
    spatial_queries: int = 0
    # Whether the readout's queries attend over the frozen backbone's patch embeddings (true)
    # or the adapted ones. The frozen patches keep what the backbone learned about every
    # colour and shape, held-out ones included; adapters trained on a few hundred
    # demonstrations of the training instructions reshape them towards those.
    readout_frozen_patches: bool = True
    # Whether pi may propose the backup actions (stop, home). They are the shield's: a stop is a
    # no-op, so a greedy Markov policy that proposes it once in a state proposes it there
    # forever, and each intervention logs one, which pulls pi onto holding still online. A
    # domain where waiting is part of the task (hand-overs) can allow them.
    propose_backups: bool = False
    # A depth point counts as standing on the table (an object, the arm) above this height (m)
    depth_min_height_m: float = 0.01

    def __post_init__(self) -> None:
        if not self.tcp_unit_m > 0:
            raise ValueError("heads.tcp_unit_m must be > 0")
        if self.spatial_queries < 0:
            raise ValueError("heads.spatial_queries must be >= 0")

    def proposable(self, backup: Sequence[bool]) -> list[bool]:
        """Which actions pi may propose, given which are backups (in action order)."""
        return [self.propose_backups or not b for b in backup]

    @property
    def proprio_scale(self) -> tuple[float, ...]:
        """Per-entry factor applied to proprioception before fusion."""
        return (1.0,) * (2 * int(self.n_joints)) + (1.0 / self.tcp_unit_m,) * 3

    @property
    def depth_cells(self) -> int:
        """Cells of the lifted depth."""
        return int(self.depth_grid[0]) * int(self.depth_grid[1])

    @property
    def depth_dim(self) -> int:
        """Length of the lifted depth vector (DEPTH_CHANNELS per cell)."""
        return self.depth_cells * DEPTH_CHANNELS

    @property
    def proprio_dim(self) -> int:
        """Length of the proprioception vector."""
        return 2 * int(self.n_joints) + 3


@dataclass(frozen=True)
class PretrainConfig:
    """Weights of the pre-training loss terms and the InfoNCE temperature tau."""

    lambda1_align: float
    lambda2_safety: float
    lambda3_bc: float
    tau_temperature: float
    # L_ground: the spatial readout's first query attends to the object the instruction names
    # (hindsight labels from successful demonstrations; 0 = off). Not in the seed: its
    # pre-training has no term that teaches the adapters *where* things are.
    lambda4_ground: float = 0.0
    lr: float = 3e-4
    # Updates of the heads alone on the frozen backbone's embeddings before the adapters join
    # (linear probing, then fine-tuning: LP-FT); 0 = none. See pretrain/train.warm_up_heads.
    head_warmup_steps: int = 0
    epochs: int = 20
    batch_size: int = 64  # global: split evenly over DDP ranks
    heldout_fraction: float = 0.2  # share of episodes held out for evaluation
    seed: int = 0


COST_MEASURES = ("discounted", "episode")


@dataclass(frozen=True)
class ScapoConfig:
    """SCAPO: CQL critics, Lagrangian cost constraint and the KL trust region."""

    gamma: float
    alpha_cql: float
    cost_limit_episode: float  # d: undiscounted cost per episode (safe-RL benchmark convention)
    delta: float | None  # discounted per-episode limit; None = derived from d (OSRL)
    eta_lambda: float
    lambda_init: float
    lambda_max: float
    epsilon_kl: float
    kl_backoff: float
    kl_max_backoffs: int
    target_tau: float
    lr: float
    batch_size: int
    updates_per_step: int
    cost_window_episodes: int
    episode_steps: int | None = None  # T of the OSRL conversion; None = sim.episode_steps
    max_grad_norm: float = 10.0
    # Reward of a proposal the shield refused for a hard limit, learned as an extra transition
    # with cost 1 (core.replay.refusal_transition); 0 = do not learn from refusals.
    refusal_penalty: float = 1.0
    # alpha of the entropy bonus in the policy objective (core.losses.policy_objective): its
    # start value; with entropy_target set, alpha is tuned by projected dual ascent (as lambda)
    # so that the mean H(pi) stays at or above entropy_target * ln(A).
    entropy_coef: float = 0.0
    entropy_target: float | None = None
    eta_entropy: float = 0.05
    entropy_coef_max: float = 10.0
    # What lambda's dual step measures: "discounted" (the seed: J_c, the discounted episode cost,
    # against delta) or "episode" (the safe-RL benchmarks': the undiscounted episode cost against
    # d, so that a violation late in an episode weighs as much as an early one).
    cost_measure: str = "discounted"
    # Online, C(s, a)'s loss also reaches the gated safety adapters (and their f_safety gates)
    # through the live features, so they keep learning "by modelling constraint violations" as
    # in pre-training; false = they follow pi's objective only (the ablation).
    safety_adapters_learn_cost: bool = True
    # beta of the demonstration anchor: the policy objective loses beta * KL(pi_ref || pi), pi_ref
    # the policy the learner started from (offline pre-training), on every batch. The critics
    # start untrained online, and the actor followed them away from what the demonstrations
    # taught within a few hundred updates; 0 = no anchor (it applies only after anchor()).
    anchor_kl: float = 1.0
    # Learning beside the demonstrations (RLPD, Ball et al. 2023: symmetric sampling): this
    # share of every batch is drawn from the demonstrations the adapters were pre-trained on,
    # the rest from the robot's own replay; the critics and pi learn on both. 0 = own replay only.
    demo_share: float = 0.0
    # Weight of L_BC (pre-training's behaviour cloning: NLL of the expert's action) on the
    # demonstration part of each batch, in pi's objective (TD3+BC, Fujimoto & Gu 2021; AWAC).
    bc_weight: float = 0.0
    # Offline critic pre-training (ScapoLearner.warm_up_critics; Cal-QL, Nakamoto et al. 2023):
    # updates of the critics alone on the demonstrations before the first online update, so
    # that the policy's first online steps follow critics that have seen the task; 0 = the
    # critics start untrained. calql: CQL's push-down stops at the demonstrations' own return.
    critic_warmup_steps: int = 0
    critic_warmup_calql: bool = True

    def __post_init__(self) -> None:
        if self.critic_warmup_steps < 0:
            raise ValueError("critic_warmup_steps must be >= 0")
        if self.anchor_kl < 0:
            raise ValueError("anchor_kl must be >= 0")
        if not 0.0 <= self.demo_share < 1.0:
            raise ValueError("demo_share must lie in [0, 1): the robot's own replay must be "
                             "part of every batch")
        if self.bc_weight < 0:
            raise ValueError("bc_weight must be >= 0")
        if self.cost_measure not in COST_MEASURES:
            raise ValueError(f"cost_measure must be one of {COST_MEASURES}, "
                             f"got {self.cost_measure!r}")
        if self.refusal_penalty < 0:
            raise ValueError("refusal_penalty must be >= 0")
        if self.entropy_coef < 0 or self.entropy_coef_max < 0:
            raise ValueError("entropy_coef and entropy_coef_max must be >= 0 (alpha is clipped "
                             "to [0, entropy_coef_max]; a max of 0 turns the bonus off)")
        if self.entropy_target is not None and not 0.0 <= self.entropy_target <= 1.0:
            raise ValueError("entropy_target is a share of ln(A): it must lie in [0, 1] or be null")
        if not 0.0 <= self.gamma < 1.0:
            raise ValueError("gamma must lie in [0, 1)")
        if not 0.0 < self.kl_backoff < 1.0:
            raise ValueError("kl_backoff must lie in (0, 1)")
        if self.epsilon_kl <= 0:
            raise ValueError("epsilon_kl must be > 0")


@dataclass(frozen=True)
class ReplayConfig:
    """Replay buffer bounds."""

    capacity_transitions: int
    memory_limit_mb: float
    store_float16: bool = True
    sampling_seed: int = 0  # seed of the batch sampler


@dataclass(frozen=True)
class LearningConfig:
    """The whole `learning:` section."""

    backbone: BackboneConfig
    split_layer_k: int
    adapters: AdapterConfig
    heads: HeadsConfig
    pretrain: PretrainConfig
    scapo: ScapoConfig
    replay: ReplayConfig
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    # The camera's mounting in base_link (position, look_at: config `sim.camera`), with which
    # the depth image becomes state (core/model.depth_lifter); None when built from `learning:`
    # alone (depth then cannot be lifted).
    camera_mount: dict[str, Any] | None = None

    @classmethod
    def from_dict(
        cls, learning: dict[str, Any], episode_steps: int | None = None
    ) -> LearningConfig:
        """Build from the `learning:` mapping; episode_steps fills scapo.episode_steps if unset."""
        if not isinstance(learning, dict):
            raise ConfigError("learning: must be a mapping")
        sub = {"backbone", "split_layer_k", "adapters", "heads", "pretrain", "scapo", "replay"}
        unknown, missing = sorted(set(learning) - sub), sorted(sub - set(learning))
        if unknown or missing:
            raise ConfigError(
                f"learning: unknown key(s) {unknown}, missing key(s) {missing}; "
                f"known: {sorted(sub)}"
            )
        scapo = dict(learning.get("scapo") or {})
        if scapo.get("episode_steps") is None and episode_steps is not None:
            scapo["episode_steps"] = int(episode_steps)
        return cls(
            backbone=_build(BackboneConfig, learning.get("backbone"), "learning.backbone"),
            split_layer_k=int(learning["split_layer_k"]),
            adapters=_build(AdapterConfig, learning.get("adapters"), "learning.adapters"),
            heads=_build(HeadsConfig, learning.get("heads"), "learning.heads"),
            pretrain=_build(PretrainConfig, learning.get("pretrain"), "learning.pretrain"),
            scapo=_build(ScapoConfig, scapo, "learning.scapo"),
            replay=_build(ReplayConfig, learning.get("replay"), "learning.replay"),
            raw=dict(learning),
        )


def learning_config(cfg: dict[str, Any]) -> LearningConfig:
    """LearningConfig from the whole loaded YAML (T for delta comes from sim.episode_steps)."""
    if "learning" not in cfg:
        raise ConfigError("config lacks the 'learning' section")
    sim = cfg.get("sim") or {}
    hp = LearningConfig.from_dict(cfg["learning"], episode_steps=sim.get("episode_steps"))
    camera = sim.get("camera") or {}
    if "position" in camera and "look_at" in camera:
        mount = {k: [float(v) for v in camera[k]] for k in ("position", "look_at")}
        hp = dataclasses.replace(hp, camera_mount=mount)
    return hp
