"""The frozen open_clip backbone, split at layer k into a cached prefix and an adapted suffix.

Nothing is ever downloaded: weights come from a local file or the model is randomly initialised
(with a loud warning). Only open_clip's plain `VisionTransformer` is supported, because the split
relies on its residual-block layout; CNN (ResNet) and timm towers are refused by name.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import open_clip
import torch
import torch.nn.functional as F  # noqa: N812 - the conventional alias
from open_clip.transformer import (
    CustomResidualAttentionBlock,
    ResidualAttentionBlock,
    VisionTransformer,
)
from torch import nn

from safari_ros.core.hparams import BackboneConfig

__all__ = [
    "BackboneError",
    "FrozenClip",
    "TextEncoder",
    "check_vit_architecture",
    "file_sha256",
    "load_backbone",
]

log = logging.getLogger(__name__)


class BackboneError(RuntimeError):
    """The backbone cannot be built: unknown/unsupported architecture or unusable weights."""


def file_sha256(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def check_vit_architecture(name: str) -> dict:
    """The open_clip config of `name`; BackboneError unless it is a plain ViT image tower."""
    cfg = open_clip.get_model_config(name)
    if cfg is None:
        vits = [m for m in open_clip.list_models() if "ViT" in m]
        raise BackboneError(f"unknown open_clip architecture '{name}'; ViTs available: {vits}")
    vision = cfg.get("vision_cfg", {})
    if isinstance(vision.get("layers"), list | tuple):
        raise BackboneError(
            f"'{name}' is a CNN (ResNet) image tower; SAFARI adapts transformer blocks and needs "
            "an open_clip vision transformer (e.g. ViT-B-32)"
        )
    if "timm_model_name" in vision:
        raise BackboneError(
            f"'{name}' uses a timm image tower ({vision['timm_model_name']}); only open_clip's "
            "own VisionTransformer can be split at a layer"
        )
    return cfg


@contextlib.contextmanager
def _offline() -> Iterator[None]:
    """Forbid Hugging Face downloads while open_clip builds the model (fail rather than fetch)."""
    keys = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    old = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: "1" for k in keys})
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _attention_branch(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """ls_1(attn(ln_1(x))) of an open_clip residual block (both block types; no attn_mask,
    which vision towers never use)."""
    if isinstance(block, CustomResidualAttentionBlock):
        return block.ls_1(block.ln_attn(block.attn(block.ln_1(x))))
    if isinstance(block, ResidualAttentionBlock):
        return block.ls_1(block.attention(q_x=block.ln_1(x)))
    raise BackboneError(f"unsupported residual block type {type(block).__name__}")


def adapted_block_forward(
    block: nn.Module, x: torch.Tensor, adapters: Sequence[nn.Module] = ()
) -> torch.Tensor:
    """One residual block with adapters after the attention sub-block.

    x = x + ls_1(attn(ln_1(x))); x = adapters(x); x = x + ls_2(mlp(ln_2(x))). With no adapters
    this is exactly the block's own forward (same ops, same order). x is batch-first (B, N, D).
    """
    x = x + _attention_branch(block, x)
    for adapter in adapters:
        x = adapter(x)
    return x + block.ls_2(block.mlp(block.ln_2(x)))


class TextEncoder:
    """CLIP text embeddings (L2-normalised), cached per string."""

    def __init__(self, clip: nn.Module, tokenizer, device: torch.device) -> None:
        self._clip, self._tokenizer, self._device = clip, tokenizer, device
        self._cache: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """(len(texts), E) float32 embeddings on the backbone's device."""
        todo = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if todo:
            tokens = self._tokenizer(list(todo)).to(self._device)
            emb = F.normalize(self._clip.encode_text(tokens).float(), dim=-1)
            self._cache.update(zip(todo, emb, strict=True))
        return torch.stack([self._cache[t] for t in texts])

    def cache_size(self) -> int:
        """Number of strings embedded so far."""
        return len(self._cache)


class FrozenClip(nn.Module):
    """A frozen open_clip CLIP model (eval mode, no gradients) with a split image tower."""

    def __init__(
        self, clip: nn.Module, architecture: str, backbone_id: str, device: torch.device
    ) -> None:
        super().__init__()
        if not isinstance(getattr(clip, "visual", None), VisionTransformer):
            raise BackboneError(
                f"'{architecture}' has a {type(getattr(clip, 'visual', None)).__name__} image "
                "tower; only open_clip's VisionTransformer is supported"
            )
        for attr in ("_embeds", "_pool"):  # the split uses these; fail early on an API change
            if not hasattr(clip.visual, attr):
                raise BackboneError(f"open_clip {open_clip.__version__} lacks visual.{attr}")
        self.clip = clip.eval().requires_grad_(False)
        self.architecture = architecture
        self.backbone_id = backbone_id
        self.device = device
        pcfg = getattr(clip.visual, "preprocess_cfg", {}) or {}
        self.image_mean = tuple(pcfg.get("mean", open_clip.OPENAI_DATASET_MEAN))
        self.image_std = tuple(pcfg.get("std", open_clip.OPENAI_DATASET_STD))
        self.image_size = int(clip.visual.image_size[0])
        self.text = TextEncoder(clip, open_clip.get_tokenizer(architecture), device)

    def train(self, mode: bool = True) -> FrozenClip:
        """Always eval: the backbone is frozen (no dropout, fixed norms)."""
        return super().train(False)

    @property
    def visual(self) -> VisionTransformer:
        """The image tower."""
        return self.clip.visual

    @property
    def blocks(self) -> nn.ModuleList:
        """visual.transformer.resblocks."""
        return self.visual.transformer.resblocks

    @property
    def num_layers(self) -> int:
        """L: number of residual blocks of the image tower."""
        return len(self.blocks)

    @property
    def width(self) -> int:
        """D: hidden size of the image tower."""
        return int(self.visual.transformer.width)

    @property
    def embed_dim(self) -> int:
        """E: size of the joint image-text embedding."""
        return int(self.visual.output_dim)

    @property
    def num_tokens(self) -> int:
        """N: tokens of the residual stream (patches + class token)."""
        g = self.visual.grid_size
        return int(g[0] * g[1] + 1)

    def _batch_first(self, x: torch.Tensor) -> torch.Tensor:
        # open_clip ViTs are batch-first today; transpose if a config says otherwise
        return x if self.visual.transformer.batch_first else x.transpose(0, 1)

    def preprocess(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 RGB image(s) (H, W, 3) or (B, H, W, 3) -> normalised (B, 3, S, S) float32.

        Resize the shorter side to S, centre-crop, normalise with the model's mean/std (CLIP's
        own preprocessing, done on tensors so it also runs on the GPU).
        """
        x = torch.as_tensor(np.asarray(images) if not torch.is_tensor(images) else images)
        if x.ndim == 3:
            x = x[None]
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"expected (B, H, W, 3) RGB images, got shape {tuple(x.shape)}")
        x = x.to(self.device).permute(0, 3, 1, 2).float() / 255.0
        s = self.image_size
        h, w = x.shape[-2:]
        scale = s / min(h, w)
        nh, nw = max(s, round(h * scale)), max(s, round(w * scale))
        if (nh, nw) != (h, w):
            x = F.interpolate(x, size=(nh, nw), mode="bicubic", antialias=True, align_corners=False)
        top, left = (nh - s) // 2, (nw - s) // 2
        x = x[..., top : top + s, left : left + s].clamp(0.0, 1.0)
        mean = torch.tensor(self.image_mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.image_std, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std

    def forward_prefix(self, images: torch.Tensor, k: int) -> torch.Tensor:
        """Normalised images (B, 3, S, S) -> residual stream entering block k, (B, N, D).

        Differentiable (the full fine-tuning baseline of the benchmark uses that); the frozen
        path is `prefix`.
        """
        x = self._batch_first(self.visual._embeds(images.to(self.device)))
        for block in self.blocks[:k]:
            x = block(x)
        return self._batch_first(x)

    @torch.no_grad()
    def prefix(self, images: torch.Tensor, k: int) -> torch.Tensor:
        """forward_prefix without gradients: what perception computes once per frame."""
        return self.forward_prefix(images, k)

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """Final norm, pooling and projection of the last residual stream (B, N, D) -> (B, E)."""
        pooled, _ = self.visual._pool(x)
        return pooled @ self.visual.proj if self.visual.proj is not None else pooled

    @torch.no_grad()
    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """The unmodified open_clip image embedding (B, E), for reference and tests."""
        return self.visual(images.to(self.device))


def load_backbone(cfg: BackboneConfig, device: str | torch.device = "cpu") -> FrozenClip:
    """Build the frozen CLIP of `cfg`: from a local weights file, or random init (warned)."""
    device = torch.device(device)
    if cfg.model_config_dir:
        open_clip.add_model_config(Path(cfg.model_config_dir).expanduser())
    check_vit_architecture(cfg.architecture)
    preprocess = {}
    if cfg.image_mean is not None:
        preprocess["mean"] = tuple(cfg.image_mean)
    if cfg.image_std is not None:
        preprocess["std"] = tuple(cfg.image_std)
    kwargs = dict(
        pretrained_image=False,
        pretrained_text=False,  # never fetch tower weights from a hub
        force_image_size=cfg.image_size,
        force_preprocess_cfg=preprocess or None,
        device=device,
    )
    if cfg.weights:
        path = Path(cfg.weights).expanduser()
        if not path.is_file():
            raise BackboneError(
                f"weights file not found: {path} (SAFARI never downloads weights; point "
                "learning.backbone.weights at a local .safetensors/.pt/.bin file, or set it to "
                "'' for a random init)"
            )
        backbone_id = f"{cfg.architecture}@sha256:{file_sha256(path)}"
        try:
            with _offline():
                clip = open_clip.create_model(cfg.architecture, pretrained=str(path), **kwargs)
        except Exception as exc:
            raise BackboneError(
                f"could not load {cfg.architecture} weights from {path}: {exc}"
            ) from exc
    else:
        log.warning(
            "!!! learning.backbone.weights is empty: %s is RANDOMLY INITIALISED (seed %d). "
            "Its features are meaningless; set a local weights file for real use. !!!",
            cfg.architecture,
            cfg.random_init_seed,
        )
        backbone_id = f"{cfg.architecture}@random-seed{cfg.random_init_seed}"
        # seeded on CPU in a forked RNG so that every process builds the same weights
        with torch.random.fork_rng(devices=[]), _offline():
            torch.manual_seed(cfg.random_init_seed)
            clip = open_clip.create_model(cfg.architecture, pretrained=None, **kwargs)
    return FrozenClip(clip, cfg.architecture, backbone_id, device)
