"""SafariModel: frozen CLIP prefix, adapted suffix (layers k..L-1) and the heads."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from safari_ros.config import ActionSpec, ConfigError, action_specs
from safari_ros.core.adapters import SafetyAdapter, TaskAdapter
from safari_ros.core.backbone import (
    FrozenClip,
    adapted_block_forward,
    load_backbone,
    view_window,
)
from safari_ros.core.batch import StateBatch
from safari_ros.core.features import DepthLifter
from safari_ros.core.heads import INSTRUCTION_PARTS, HeadOutputs, SafariHeads
from safari_ros.core.hparams import LearningConfig, learning_config
from safari_ros.core.language import instruction_frame, referring_phrases
from safari_ros.robot.camera import camera_pose

__all__ = ["SafariModel", "build_model", "depth_lifter"]

log = logging.getLogger(__name__)


class SafariModel(nn.Module):
    """The SAFARI policy: `prefix()` runs once per frame; `suffix_and_heads()` on cached tokens.

    Only the adapters and heads are trainable; the backbone stays frozen in eval mode.
    """

    def __init__(
        self, backbone: FrozenClip, actions: Sequence[ActionSpec], hp: LearningConfig
    ) -> None:
        super().__init__()
        k, n_layers = hp.split_layer_k, backbone.num_layers
        if not 0 <= k <= n_layers:
            raise ConfigError(f"split_layer_k={k} must lie in [0, {n_layers}]")
        ad = hp.adapters
        for name, layers in (("task_layers", ad.task_layers), ("safety_layers", ad.safety_layers)):
            bad = [i for i in layers if not k <= i < n_layers]
            if bad:
                raise ConfigError(
                    f"adapters.{name} {bad} outside the adapted suffix [{k}, {n_layers}) "
                    f"(split_layer_k={k}, {backbone.architecture} has {n_layers} blocks)"
                )
        self.backbone = backbone
        self.hp = hp
        self.split_layer_k = k
        self.actions = list(actions)
        self.grad_checkpointing = False  # recompute suffix activations in backward (GPU memory)
        width = backbone.width
        self.adapters = nn.ModuleDict()
        for i in range(k, n_layers):
            mods = []
            if i in ad.task_layers:
                mods.append(TaskAdapter(width, ad.bottleneck, ad.activation))
            if i in ad.safety_layers:
                mods.append(SafetyAdapter(width, ad.bottleneck, ad.activation))
            if mods:
                self.adapters[str(i)] = nn.ModuleList(mods)
        text = backbone.text.encode([a.description for a in self.actions])
        self.heads = SafariHeads(
            text,
            depth_dim=hp.heads.depth_dim,
            proprio_dim=hp.heads.proprio_dim,
            hidden=hp.heads.hidden,
            tau_temperature=hp.pretrain.tau_temperature,
            proprio_scale=hp.heads.proprio_scale,
            spatial_queries=hp.heads.spatial_queries,
            patch_grid=int(backbone.visual.grid_size[0]),
            readout_scale=float(backbone.clip.logit_scale.exp()),
            proposable=hp.heads.proposable([a.backup for a in self.actions]),
        )
        self.to(backbone.device)

    # ---------------------------------------------------------------- identity and bookkeeping
    @property
    def device(self) -> torch.device:
        """Where the model lives."""
        return self.backbone.device

    @property
    def backbone_id(self) -> str:
        """Architecture + weights hash (or random seed) of the frozen backbone."""
        return self.backbone.backbone_id

    @property
    def action_names(self) -> list[str]:
        """The action set, in index order."""
        return [a.name for a in self.actions]

    def train(self, mode: bool = True) -> SafariModel:
        """Train mode for adapters and heads only; the backbone stays in eval mode."""
        super().train(mode)
        self.backbone.train(False)
        return self

    def trainable_named_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        """(name, parameter) of the adapters and heads: what checkpoints hold."""
        for name, p in self.named_parameters():
            if not name.startswith("backbone."):
                yield name, p

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Adapters + heads."""
        return [p for _, p in self.trainable_named_parameters()]

    def actor_parameters(self) -> list[nn.Parameter]:
        """Parameters that shape pi: adapters, state fusion, action offsets, policy head."""
        params = list(self.adapters.parameters())
        for m in self.heads.actor_modules():
            params.extend([m] if isinstance(m, nn.Parameter) else m.parameters())
        return params

    def safety_adapter_parameters(self) -> list[nn.Parameter]:
        """Parameters of the gated safety adapters (with their f_safety gates): a subset of
        the actor group that SCAPO also trains on C(s, a)'s loss."""
        return [p for m in self.adapters.modules() if isinstance(m, SafetyAdapter)
                for p in m.parameters()]

    def critic_parameters(self) -> list[nn.Parameter]:
        """Parameters of Q_r, Q_c/C and V_C."""
        return [p for m in self.heads.critic_modules() for p in m.parameters()]

    def trainable_share(self) -> dict[str, Any]:
        """Trainable parameter counts and their share of the frozen image tower / whole CLIP."""
        n_train = sum(p.numel() for p in self.trainable_parameters())
        n_adapters = sum(p.numel() for p in self.adapters.parameters())
        n_visual = sum(p.numel() for p in self.backbone.visual.parameters())
        n_clip = sum(p.numel() for p in self.backbone.parameters())
        return {
            "trainable": n_train,
            "adapters": n_adapters,
            "heads": n_train - n_adapters,
            "vision_tower": n_visual,
            "clip_total": n_clip,
            "share_of_vision_tower": n_train / n_visual,
            "share_of_clip": n_train / n_clip,
        }

    # ------------------------------------------------------------------------------- forward
    def prefix(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised images (B, 3, S, S) -> frozen tokens entering block k, (B, N, D)."""
        return self.backbone.prefix(images, self.split_layer_k)

    def residual_stream(self, tokens: torch.Tensor, adapted: bool = True) -> torch.Tensor:
        """Layer-k tokens (B, N, D) -> the stream after the adapted blocks k..L-1 (B, N, D);
        adapted=False: after the backbone's own blocks (the frozen model's stream)."""
        x = tokens.to(self.device, torch.float32)
        for i in range(self.split_layer_k, self.backbone.num_layers):
            block = self.backbone.blocks[i]
            adapters = self.adapters[str(i)] if adapted and str(i) in self.adapters else ()
            if self.grad_checkpointing and torch.is_grad_enabled():
                x = checkpoint(adapted_block_forward, block, x, adapters, use_reentrant=False)
            else:
                x = adapted_block_forward(block, x, adapters)
        return x

    def suffix(self, tokens: torch.Tensor) -> torch.Tensor:
        """Layer-k tokens (B, N, D) -> adapted blocks, final norm, pool, proj -> (B, E)."""
        return self.backbone.pool(self.residual_stream(tokens))

    def suffix_with_patches(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer-k tokens (B, N, D) -> the adapted pooled embedding (B, E) and patch
        embeddings (B, P, E)."""
        return self.backbone.pool_and_patches(self.residual_stream(tokens))

    def frozen_pool_and_patches(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer-k tokens (B, N, D) -> the frozen backbone's pooled embedding (B, E) and patch
        embeddings (B, P, E): the adapters left out."""
        return self.backbone.pool_and_patches(self.residual_stream(tokens, adapted=False))

    @property
    def readout_reads_frozen(self) -> bool:
        """Whether the spatial readout attends over the frozen blocks' patch embeddings."""
        return self.hp.heads.readout_frozen_patches

    def suffix_and_heads(
        self, state: StateBatch, detach_critic_inputs: bool = False
    ) -> HeadOutputs:
        """All heads for a batch of states given as cached layer-k tokens plus the rest. The
        patch embeddings are projected only for heads that read them (policy and learner run
        this on every step and update), from the frozen blocks when
        heads.readout_frozen_patches says so."""
        s = state.to(self.device)
        if self.heads.readout is None:
            pooled, patches = self.suffix(s.tokens), None
        elif self.readout_reads_frozen:
            pooled = self.suffix(s.tokens)
            with torch.no_grad():
                patches = self.frozen_pool_and_patches(s.tokens)[1]
        else:
            pooled, patches = self.suffix_with_patches(s.tokens)
        return self.heads(pooled, s.depth, s.proprio, s.instruction, detach_critic_inputs,
                          patches)

    def forward(self, state: StateBatch) -> HeadOutputs:
        """Same as suffix_and_heads."""
        return self.suffix_and_heads(state)

    @property
    def instruction_dim(self) -> int:
        """Length of an encoded instruction: E for the sentence, E for its frame, plus E per
        spatial query."""
        return self.backbone.embed_dim * (INSTRUCTION_PARTS + self.hp.heads.spatial_queries)

    def encode_instruction(self, texts: Sequence[str]) -> torch.Tensor:
        """CLIP text embeddings of instructions and of their frames (core/language:
        "lift something"), cached per string: (len, 2E), followed, when the heads have Q
        spatial queries, by the embeddings of each instruction's first Q referring phrases
        (the last one repeated when there are fewer; the sentence itself when there is none):
        (len, (2 + Q) E)."""
        texts = list(texts)
        encode = self.backbone.text.encode
        parts = [encode(texts), encode([instruction_frame(t) for t in texts])]
        q = self.hp.heads.spatial_queries
        if q > 0:
            phrases = []
            for text in texts:
                found = referring_phrases(text) or [text]
                phrases += (found + [found[-1]] * q)[:q]
            parts.append(encode(phrases).reshape(len(texts), -1))
        return torch.cat(parts, dim=1)


def build_model(
    cfg: dict[str, Any] | LearningConfig,
    actions: Sequence[ActionSpec] | None = None,
    device: str | torch.device = "cpu",
) -> SafariModel:
    """SafariModel from the loaded YAML (or a LearningConfig plus the action set).

    With the whole config dict, the action set comes from its `actions:` section.
    """
    if isinstance(cfg, LearningConfig):
        hp = cfg
        if actions is None:
            raise ConfigError("build_model(LearningConfig) needs the action set")
    else:
        hp = learning_config(cfg)
        actions = action_specs(cfg) if actions is None else actions
    model = SafariModel(load_backbone(hp.backbone, device), actions, hp)
    share = model.trainable_share()
    log.info(
        "SAFARI model %s: %d trainable parameters = %.3f%% of the image tower",
        model.backbone_id,
        share["trainable"],
        100 * share["share_of_vision_tower"],
    )
    return model


def depth_lifter(hp: LearningConfig) -> DepthLifter:
    """The depth lifting of the models' state (core/features.lift_depth): the heads' grid over
    the backbone's view of each image, for the camera mounted as hp.camera_mount says."""
    if hp.camera_mount is None:
        raise ConfigError("lifting depth needs the camera's mounting (config sim.camera: "
                          "position, look_at)")
    roi = hp.backbone.roi
    return DepthLifter(camera_pose(hp.camera_mount), tuple(hp.heads.depth_grid),
                       hp.heads.depth_min_height_m, lambda h, w: view_window(h, w, roi))
