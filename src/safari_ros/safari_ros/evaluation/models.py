"""The models of the compared methods, all with SafariModel's interface.

- SCAPO, its ablations, "adapters without safety" and zero-shot: core ``SafariModel`` as is.
- ``FullFinetuneModel``: the same model with the whole image tower trainable; its state holds the
  preprocessed image (nothing frozen to cache), its "suffix" is the whole tower.
- ``CnnSafariModel``: safe RL without the VLM: a small CNN trained from scratch on the same pixels,
  the same heads (SafariHeads) on depth + proprioception + instruction; text is a fixed hashed
  bag of words instead of CLIP's text tower.

ScapoLearner duck-types on: device, heads, actor_parameters(), critic_parameters(), train(),
suffix_and_heads(state, detach_critic_inputs). The harness also uses prefix(), encode_instruction(),
backbone_id, trainable_parameters() and ``perceive()`` below.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import open_clip
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from safari_ros.config import ActionSpec, ConfigError, action_specs
from safari_ros.core.backbone import FrozenClip, crop_roi, load_backbone
from safari_ros.core.batch import StateBatch
from safari_ros.core.heads import HeadOutputs, SafariHeads
from safari_ros.core.hparams import LearningConfig, learning_config
from safari_ros.core.language import instruction_frame
from safari_ros.core.model import SafariModel, build_model

__all__ = [
    "CnnSafariModel",
    "FullFinetuneModel",
    "bag_of_words",
    "build_method_model",
    "perceive",
    "register_model_configs",
    "trainable_count",
    "zero_shot_logits",
]

MODEL_CONFIGS = Path(__file__).resolve().parent / "model_configs"
_registered = False


def register_model_configs() -> None:
    """Make the harness's small open_clip architectures (SafariEval-ViT-Tiny) known, once."""
    global _registered
    if not _registered:
        open_clip.add_model_config(MODEL_CONFIGS)
        _registered = True


def _params(modules: Iterable[nn.Module | nn.Parameter]) -> list[nn.Parameter]:
    out: list[nn.Parameter] = []
    for m in modules:
        out.extend([m] if isinstance(m, nn.Parameter) else m.parameters())
    return out


def trainable_count(model: nn.Module) -> int:
    """Number of parameters that training may change."""
    return sum(p.numel() for p in model.trainable_parameters())


class FullFinetuneModel(SafariModel):
    """Full fine-tuning of the image tower: every block, the patch embedding and the projection.

    The state's ``tokens`` field holds the preprocessed image: with a trainable tower there is no
    frozen prefix to cache, so every update runs the whole tower (what adapters avoid).
    """

    def __init__(self, backbone: FrozenClip, actions: Sequence[ActionSpec], hp: LearningConfig):
        super().__init__(backbone, actions, hp)
        backbone.visual.requires_grad_(True)  # the text tower stays frozen (it embeds the labels)

    def prefix(self, images: torch.Tensor) -> torch.Tensor:
        """Nothing is frozen: the state is the normalised image itself."""
        return images.to(self.device)

    @property
    def readout_reads_frozen(self) -> bool:
        """Nothing is frozen: the readout reads the tuned tower's patches."""
        return False

    def residual_stream(self, tokens: torch.Tensor, adapted: bool = True) -> torch.Tensor:
        """The whole (trainable) image tower on normalised images -> its last stream."""
        bb = self.backbone
        return bb.forward_prefix(tokens.to(self.device, torch.float32), bb.num_layers)

    def trainable_named_parameters(self):
        """Heads (and adapters, if any) plus the image tower."""
        yield from super().trainable_named_parameters()
        for name, p in self.backbone.visual.named_parameters():
            yield f"backbone.visual.{name}", p

    def actor_parameters(self) -> list[nn.Parameter]:
        """The image tower shapes pi, so it joins the actor group (and the KL trust region)."""
        return super().actor_parameters() + list(self.backbone.visual.parameters())


def bag_of_words(texts: Sequence[str], dim: int) -> torch.Tensor:
    """(len, dim) unit vectors: the normalised sum of a fixed random vector per lower-case word.

    Each word's vector is seeded by its CRC32, so every process gets the same embedding. It tells
    words apart without any pretrained knowledge of what they mean (the no-VLM baseline).
    """
    rows = []
    for text in texts:
        vec = torch.zeros(dim)
        for word in text.lower().split():
            gen = torch.Generator().manual_seed(zlib.crc32(word.encode()))
            vec += torch.randn(dim, generator=gen)
        rows.append(F.normalize(vec, dim=0))
    return torch.stack(rows)


class PixelEncoder(nn.Module):
    """Strided 3x3 convolutions + ReLU, global average pooling, linear to the embedding."""

    def __init__(self, channels: Sequence[int], embed_dim: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for c in channels:
            layers += [nn.Conv2d(c_in, int(c), 3, stride=2, padding=1), nn.ReLU()]
            c_in = int(c)
        self.conv = nn.Sequential(*layers)
        self.out = nn.Linear(c_in, int(embed_dim))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> (B, E)."""
        return self.out(self.conv(images).mean(dim=(2, 3)))


class CnnSafariModel(nn.Module):
    """Safe RL without the VLM: PixelEncoder + SafariHeads, trained from scratch by SCAPO."""

    def __init__(
        self, hp: LearningConfig, actions: Sequence[ActionSpec], cnn: dict[str, Any],
        device: str | torch.device = "cpu",
    ) -> None:
        super().__init__()
        self.hp = hp
        self.actions = list(actions)
        self.image_size = int(cnn["image_size"])
        self.embed_dim = int(cnn["embed_dim"])
        self.encoder = PixelEncoder(cnn["channels"], self.embed_dim)
        self.heads = SafariHeads(
            bag_of_words([a.description for a in self.actions], self.embed_dim),
            depth_dim=hp.heads.depth_dim,
            proprio_dim=hp.heads.proprio_dim,
            hidden=hp.heads.hidden,
            tau_temperature=hp.pretrain.tau_temperature,
            proprio_scale=hp.heads.proprio_scale,
            proposable=hp.heads.proposable([a.backup for a in self.actions]),
        )
        self._device = torch.device(device)
        self.backbone_id = f"cnn{list(cnn['channels'])}-from-scratch"
        self.to(self._device)

    @property
    def device(self) -> torch.device:
        """Where the model lives."""
        return self._device

    def preprocess(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 RGB (B, H, W, 3) -> (B, 3, S, S) in [-1, 1]: the ROI's window (as the VLM
        models see it), area-resized to image_size."""
        x = torch.as_tensor(np.asarray(images)).to(self._device)
        x = x[None] if x.ndim == 3 else x
        x = crop_roi(x, self.hp.backbone.roi)  # the same window the VLM models see
        x = x.permute(0, 3, 1, 2).float() / 127.5 - 1.0
        return F.interpolate(x, size=(self.image_size, self.image_size), mode="area")

    def prefix(self, images: torch.Tensor) -> torch.Tensor:
        """Nothing is frozen: the state is the preprocessed image."""
        return images.to(self._device)

    def suffix_and_heads(
        self, state: StateBatch, detach_critic_inputs: bool = False
    ) -> HeadOutputs:
        """All heads for a batch of states (images + depth + proprio + instruction)."""
        s = state.to(self._device)
        return self.heads(
            self.encoder(s.tokens), s.depth, s.proprio, s.instruction, detach_critic_inputs
        )

    def forward(self, state: StateBatch) -> HeadOutputs:
        """Same as suffix_and_heads."""
        return self.suffix_and_heads(state)

    def encode_instruction(self, texts: Sequence[str]) -> torch.Tensor:
        """Bag-of-words embeddings of instructions and of their frames (len, 2E), the parts
        the heads read (SafariModel.encode_instruction)."""
        frames = [instruction_frame(t) for t in texts]
        return torch.cat([bag_of_words(texts, self.embed_dim),
                          bag_of_words(frames, self.embed_dim)], dim=1).to(self._device)

    def actor_parameters(self) -> list[nn.Parameter]:
        """Encoder + the heads' actor group."""
        return list(self.encoder.parameters()) + _params(self.heads.actor_modules())

    def safety_adapter_parameters(self) -> list[nn.Parameter]:
        """None: the from-scratch model has no adapters."""
        return []

    def critic_parameters(self) -> list[nn.Parameter]:
        """The heads' critic group."""
        return _params(self.heads.critic_modules())

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Everything: the model is trained from scratch."""
        return self.actor_parameters() + self.critic_parameters()


def perceive(model: nn.Module, rgb: np.ndarray) -> torch.Tensor:
    """uint8 RGB frames (B, H, W, 3) -> the state's ``tokens``: what perception sends and replay
    stores (layer-k tokens for the frozen-prefix models, preprocessed images for the others)."""
    preprocess = getattr(model, "preprocess", None) or model.backbone.preprocess
    return model.prefix(preprocess(rgb))


@torch.no_grad()
def zero_shot_logits(model: SafariModel, state: StateBatch) -> torch.Tensor:
    """CLIP's zero-shot action scores: cos(image + instruction, action description) / tau.

    Untrained adapters are exactly the identity (their up-projection starts at zero), so
    ``model.suffix`` is the plain frozen CLIP image embedding here.
    """
    s = state.to(model.device)
    image = F.normalize(model.suffix(s.tokens), dim=-1)
    scene = F.normalize(image + s.instruction[:, :image.shape[1]], dim=-1)  # the sentence
    return scene @ model.heads.action_text.T / model.heads.tau


def build_method_model(
    tabletop: dict[str, Any], method: dict[str, Any], device: str | torch.device
) -> nn.Module:
    """The model a method's resolved config asks for (backbone from a local file or random)."""
    register_model_configs()
    hp = learning_config(tabletop)
    actions = action_specs(tabletop)
    encoder = method["encoder"]
    if encoder == "cnn":
        return CnnSafariModel(hp, actions, method["cnn"], device)
    if encoder != "clip":
        raise ConfigError(f"method.encoder must be 'clip' or 'cnn', not {encoder!r}")
    if method["vision_tower_trainable"]:
        return FullFinetuneModel(load_backbone(hp.backbone, device), actions, hp)
    return build_model(hp, actions, device)
