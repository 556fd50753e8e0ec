"""ROS-free learning core of SAFARI: frozen CLIP backbone split at layer k, Task/Safety adapters,
heads, pre-training losses, SCAPO, replay of cached prefix tokens, and checkpoints.

Typical use::

    cfg = load_config()
    model = build_model(cfg, device="cuda" if torch.cuda.is_available() else "cpu")
    tokens = model.prefix(model.backbone.preprocess(rgb_uint8))        # perception, per frame
    out = model.suffix_and_heads(StateBatch(tokens, depth, proprio, instruction))  # policy
    learner = ScapoLearner(model, model.hp.scapo); learner.update(replay.sample(32))
"""

from safari_ros.core.adapters import SafetyAdapter, TaskAdapter
from safari_ros.core.backbone import BackboneError, FrozenClip, load_backbone
from safari_ros.core.batch import StateBatch, TransitionBatch
from safari_ros.core.checkpoint import (
    CheckpointError,
    CheckpointInfo,
    latest_checkpoint_version,
    load_checkpoint,
    nan_free,
    save_checkpoint,
    validate_checkpoint,
    versioned_checkpoint_path,
)
from safari_ros.core.features import DepthLifter, lift_depth, proprio_vector
from safari_ros.core.heads import HeadOutputs, SafariHeads
from safari_ros.core.hparams import LearningConfig, learning_config
from safari_ros.core.losses import pretrain_loss
from safari_ros.core.model import SafariModel, build_model, depth_lifter
from safari_ros.core.replay import ReplayBuffer, ReplayError, Transition, refusal_transition
from safari_ros.core.scapo import (
    LagrangeMultiplier,
    ScapoLearner,
    discounted_cost_limit,
    shield_action,
)

__all__ = [
    "BackboneError",
    "CheckpointError",
    "CheckpointInfo",
    "DepthLifter",
    "FrozenClip",
    "HeadOutputs",
    "LagrangeMultiplier",
    "LearningConfig",
    "ReplayBuffer",
    "ReplayError",
    "SafariHeads",
    "SafariModel",
    "SafetyAdapter",
    "ScapoLearner",
    "StateBatch",
    "TaskAdapter",
    "Transition",
    "TransitionBatch",
    "build_model",
    "depth_lifter",
    "discounted_cost_limit",
    "latest_checkpoint_version",
    "learning_config",
    "lift_depth",
    "load_backbone",
    "load_checkpoint",
    "nan_free",
    "pretrain_loss",
    "proprio_vector",
    "refusal_transition",
    "save_checkpoint",
    "shield_action",
    "validate_checkpoint",
    "versioned_checkpoint_path",
]
