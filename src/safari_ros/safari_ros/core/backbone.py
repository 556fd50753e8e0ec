"""The frozen open_clip backbone, split at layer k into a cached prefix and an adapted suffix.

Nothing is ever downloaded: weights come from a local file or the model is randomly initialised
(with a loud warning). Only open_clip's plain `VisionTransformer` is supported, because the split
relies on its residual-block layout; CNN (ResNet) and timm towers are refused by name.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
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

from safari_ros.core.hparams import BackboneConfig, RegionOfInterest

__all__ = [
    "BackboneError",
    "FrozenClip",
    "TextEncoder",
    "check_vit_architecture",
    "check_weights_card",
    "crop_roi",
    "file_sha256",
    "load_backbone",
    "normalize_images",
    "resize_center_crop",
    "roi_window",
    "view_window",
    "weights_card_path",
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


def weights_card_path(weights: str | os.PathLike[str]) -> Path:
    """The machine-readable model card that travels with a weights file (x.safetensors ->
    x.card.json), as `safari_pretrain backbone` writes it."""
    p = Path(weights)
    return p.with_name(p.name.split(".")[0] + ".card.json")


def check_weights_card(path: Path, architecture: str, sha256: str) -> dict | None:
    """The weights' model card, after checking that it describes this very file and this
    architecture; None when the file has no card (real CLIP weights have none). BackboneError
    on a mismatch: a truncated, altered or swapped file is never loaded."""
    card_file = weights_card_path(path)
    if not card_file.is_file():
        return None
    try:
        card = json.loads(card_file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BackboneError(f"model card {card_file} is unreadable: {exc}") from exc
    if card.get("sha256") != sha256:
        raise BackboneError(
            f"weights file {path} (sha256 {sha256[:16]}..., {path.stat().st_size} bytes) does not "
            f"match its model card {card_file.name} (sha256 {str(card.get('sha256'))[:16]}..., "
            f"{card.get('bytes')} bytes): the file is truncated, altered or not the one the "
            f"card describes. Restore it (git checkout -- {path.name}) or rebuild it with: "
            f"{card.get('made_with', {}).get('command') or 'safari_pretrain backbone'}"
        )
    if card.get("architecture") != architecture:
        raise BackboneError(
            f"weights file {path} is a {card.get('architecture')} model (its card says so) but "
            f"learning.backbone.architecture is {architecture}"
        )
    return card


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


def roi_window(height: int, width: int, roi: RegionOfInterest | None) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) pixels of the ROI in an image of this size, scaled to its resolution;
    the whole image when roi is None. ValueError when the aspect ratio is not the one the ROI
    was set for (another camera: set learning.backbone.roi for it)."""
    if roi is None:
        return 0, 0, width, height
    if height * roi.image_width != width * roi.image_height:
        raise ValueError(
            f"learning.backbone.roi is set for {roi.image_width}x{roi.image_height} images, not "
            f"{width}x{height} ones: set it for this camera"
        )
    s = width / roi.image_width
    x0, y0 = round(roi.x_offset * s), round(roi.y_offset * s)
    x1 = max(x0 + 1, round((roi.x_offset + roi.width) * s))
    y1 = max(y0 + 1, round((roi.y_offset + roi.height) * s))
    return x0, y0, x1, y1


def view_window(height: int, width: int, roi: RegionOfInterest | None
                ) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1): the pixels of a height x width image that FrozenClip.preprocess shows
    the ViT (the ROI, then the centred square its crop keeps); the patch grid tiles them."""
    x0, y0, x1, y1 = roi_window(height, width, roi)
    side = min(x1 - x0, y1 - y0)
    left, top = x0 + (x1 - x0 - side) // 2, y0 + (y1 - y0 - side) // 2
    return left, top, left + side, top + side


def crop_roi(images: torch.Tensor | np.ndarray, roi: RegionOfInterest | None
             ) -> torch.Tensor | np.ndarray:
    """The ROI's window (roi_window) of channel-last images (..., H, W, C); the images
    themselves when roi is None."""
    if roi is None:
        return images
    x0, y0, x1, y1 = roi_window(images.shape[-3], images.shape[-2], roi)
    return images[..., y0:y1, x0:x1, :]


def resize_center_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (B, H, W, 3) RGB -> float (B, 3, size, size) in [0, 1]: the shorter side resized to
    `size` (bicubic, antialiased), then centre-cropped; CLIP's own geometry, on tensors so that
    it also runs on the GPU. The backbone's pre-training data goes through the same function."""
    x = images.permute(0, 3, 1, 2).float() / 255.0
    h, w = x.shape[-2:]
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    if (nh, nw) != (h, w):
        x = F.interpolate(x, size=(nh, nw), mode="bicubic", antialias=True, align_corners=False)
    top, left = (nh - size) // 2, (nw - size) // 2
    return x[..., top : top + size, left : left + size].clamp(0.0, 1.0)


def normalize_images(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """(B, 3, S, S) in [0, 1] -> normalised with the model's mean and std."""
    m = torch.tensor(tuple(mean), device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    s = torch.tensor(tuple(std), device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - m) / s


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
        self, clip: nn.Module, architecture: str, backbone_id: str, device: torch.device,
        roi: RegionOfInterest | None = None,
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
        self.roi = roi
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

        The configured region of interest (learning.backbone.roi), then CLIP's own
        preprocessing: resize the shorter side to S, centre-crop, normalise with the model's
        mean/std (on tensors, so it also runs on the GPU).
        """
        x = torch.as_tensor(np.asarray(images) if not torch.is_tensor(images) else images)
        if x.ndim == 3:
            x = x[None]
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"expected (B, H, W, 3) RGB images, got shape {tuple(x.shape)}")
        x = resize_center_crop(crop_roi(x, self.roi).to(self.device), self.image_size)
        return normalize_images(x, self.image_mean, self.image_std)

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
        """Final norm, pooling and projection of the last residual stream (B, N, D) -> (B, E)
        (the patches are left unprojected: most callers do not read them)."""
        pooled = self.visual._pool(x)[0]
        return pooled @ self.visual.proj if self.visual.proj is not None else pooled

    def pool_and_patches(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The pooled embedding (B, E) and the patch embeddings (B, P, E): the patch tokens
        after the final norm through the same projection into the joint image-text space (as
        MaskCLIP reads dense features from CLIP)."""
        pooled, tokens = self.visual._pool(x)
        if self.visual.proj is not None:
            return pooled @ self.visual.proj, tokens @ self.visual.proj
        return pooled, tokens

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
        sha = file_sha256(path)
        backbone_id = f"{cfg.architecture}@sha256:{sha}"
        card = check_weights_card(path, cfg.architecture, sha)
        try:
            with _offline():
                clip = open_clip.create_model(cfg.architecture, pretrained=str(path), **kwargs)
        except Exception as exc:
            raise BackboneError(
                f"could not load {cfg.architecture} weights from {path}: {exc} (do the weights "
                "fit learning.backbone.architecture and image_size?)"
            ) from exc
        if card is not None:
            heldout = card.get("heldout", {}).get("retrieval", {})
            log.info("backbone: %s from %s (model card %s: held-out image->text top-1 %.2f, "
                     "chance %.2f; sha256 checked)", cfg.architecture, path,
                     weights_card_path(path).name, heldout.get("image_to_text_top1", float("nan")),
                     heldout.get("chance_top1", float("nan")))
        else:
            log.info("backbone: %s from %s (sha256 %s, no model card)", cfg.architecture, path,
                     sha[:12])
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
    return FrozenClip(clip, cfg.architecture, backbone_id, device, cfg.roi)
