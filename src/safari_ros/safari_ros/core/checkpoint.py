"""Adapter checkpoints: only trainable parameters, in safetensors, with identity metadata.

Written atomically (tmp file + os.replace) with a `<file>.sha256` sidecar. Loading verifies the
sha256, then refuses a checkpoint made for another backbone, layer split or action set, so a
policy can never run heads trained for different inputs or outputs.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from safari_ros.core.backbone import file_sha256
from safari_ros.core.model import SafariModel

__all__ = [
    "CheckpointError",
    "CheckpointInfo",
    "first_non_finite",
    "latest_checkpoint_version",
    "load_checkpoint",
    "nan_free",
    "read_checkpoint_info",
    "save_checkpoint",
    "validate_checkpoint",
    "versioned_checkpoint_path",
]

FORMAT = "safari-adapters"
FORMAT_VERSION = "1"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt, or made for another backbone / split / action set."""


@dataclass(frozen=True)
class CheckpointInfo:
    """What a checkpoint says about itself."""

    path: Path
    sha256: str
    version: int  # adapter version (increments with every published checkpoint)
    step: int  # learner updates when written
    backbone_id: str
    architecture: str
    split_layer_k: int
    action_names: tuple[str, ...]
    config: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


_VERSIONED = re.compile(r"adapters_v(\d+)\.safetensors")


def versioned_checkpoint_path(folder: str | os.PathLike[str], version: int) -> Path:
    """Where a learner writes adapter version `version` in `folder`."""
    return Path(folder) / f"adapters_v{int(version):04d}.safetensors"


def latest_checkpoint_version(folder: str | os.PathLike[str]) -> int:
    """The highest version written to `folder` by `versioned_checkpoint_path` (0: none), so a
    restarted learner numbers on instead of overwriting versions a policy has already seen
    (and would ignore: policies take only versions newer than theirs)."""
    path = Path(folder)
    if not path.is_dir():
        return 0
    found = [int(m.group(1)) for f in path.iterdir() if (m := _VERSIONED.fullmatch(f.name))]
    return max(found, default=0)


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    """`<file>.sha256`."""
    p = Path(path)
    return p.with_name(p.name + ".sha256")


def save_checkpoint(
    path: str | os.PathLike[str],
    model: SafariModel,
    version: int,
    step: int,
    extra: dict[str, Any] | None = None,
) -> CheckpointInfo:
    """Write the adapters + heads of `model` atomically, plus the sha256 sidecar."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {n: p.detach().cpu().contiguous() for n, p in model.trainable_named_parameters()}
    config = json.loads(json.dumps(model.hp.raw, default=str))
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "version": str(int(version)),
        "step": str(int(step)),
        "backbone_id": model.backbone_id,
        "architecture": model.backbone.architecture,
        "split_layer_k": str(model.split_layer_k),
        "action_names": json.dumps(model.action_names),
        "action_descriptions": json.dumps([a.description for a in model.actions]),
        "config": json.dumps(config),
        "extra": json.dumps(extra or {}),
    }
    tmp = path.with_name(path.name + ".tmp")
    try:
        save_file(tensors, str(tmp), metadata=meta)
        with open(tmp, "rb+") as f:  # durable before it becomes visible under the final name
            os.fsync(f.fileno())
        digest = file_sha256(tmp)
        # The sidecar first: a checkpoint is never visible under its final name without the
        # sha256 that validates it (a full disk between the two writes left such files).
        _atomic_write_text(sidecar_path(path), f"{digest}  {path.name}\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return read_checkpoint_info(path, expected_sha256=digest)


def read_checkpoint_info(
    path: str | os.PathLike[str], expected_sha256: str | None = None
) -> CheckpointInfo:
    """Verify the file's sha256 (against `expected_sha256` or the sidecar) and read its metadata."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if expected_sha256 is None:
        side = sidecar_path(path)
        if not side.is_file():
            raise CheckpointError(f"checkpoint {path} has no sha256 sidecar {side.name}")
        expected_sha256 = side.read_text().split()[0] if side.read_text().split() else ""
    digest = file_sha256(path)
    if digest != expected_sha256.strip().lower():
        raise CheckpointError(
            f"checkpoint {path} is corrupt or was modified: sha256 {digest} != expected "
            f"{expected_sha256}"
        )
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (OSError, SafetensorError) as exc:
        raise CheckpointError(
            f"checkpoint {path} is not a readable safetensors file: {exc}"
        ) from exc
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a SAFARI adapter checkpoint")
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has format version {meta.get('format_version')}, expected {FORMAT_VERSION}"
        )
    try:
        return CheckpointInfo(
            path=path,
            sha256=digest,
            version=int(meta["version"]),
            step=int(meta["step"]),
            backbone_id=meta["backbone_id"],
            architecture=meta["architecture"],
            split_layer_k=int(meta["split_layer_k"]),
            action_names=tuple(json.loads(meta["action_names"])),
            config=json.loads(meta["config"]),
            extra=json.loads(meta.get("extra", "{}")),
        )
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} has malformed metadata: {exc}") from exc


def validate_checkpoint(
    path: str | os.PathLike[str], model: SafariModel, expected_sha256: str | None = None
) -> CheckpointInfo:
    """Checks that `path` is intact and made for `model`'s backbone, split and action set."""
    info = read_checkpoint_info(path, expected_sha256)
    if info.backbone_id != model.backbone_id:
        raise CheckpointError(
            f"checkpoint {info.path} was trained on backbone {info.backbone_id!r}; "
            f"this model runs {model.backbone_id!r}"
        )
    if info.split_layer_k != model.split_layer_k:
        raise CheckpointError(
            f"checkpoint {info.path} splits at layer {info.split_layer_k}; "
            f"this model at {model.split_layer_k}"
        )
    if list(info.action_names) != model.action_names:
        raise CheckpointError(
            f"checkpoint {info.path} has action set {list(info.action_names)}; "
            f"the configured set is {model.action_names}"
        )
    # Input units are not visible in the weights' shapes; a checkpoint from before the setting
    # existed saw the TCP in metres.
    unit = float(info.config.get("heads", {}).get("tcp_unit_m", 1.0))
    if not math.isclose(unit, model.hp.heads.tcp_unit_m):
        raise CheckpointError(
            f"checkpoint {info.path} was trained with heads.tcp_unit_m = {unit}; this model "
            f"uses {model.hp.heads.tcp_unit_m} (the heads would misread the TCP position)"
        )
    return info


def load_checkpoint(
    path: str | os.PathLike[str], model: SafariModel, expected_sha256: str | None = None
) -> CheckpointInfo:
    """Validate, then load the adapters + heads into `model` (all-or-nothing)."""
    info = validate_checkpoint(path, model, expected_sha256)
    params = dict(model.trainable_named_parameters())
    tensors: dict[str, torch.Tensor] = {}
    try:
        with safe_open(str(info.path), framework="pt", device="cpu") as f:
            keys = set(f.keys())
            if keys != set(params):
                raise CheckpointError(
                    f"checkpoint {info.path} parameters differ from the model's: missing "
                    f"{sorted(set(params) - keys)[:5]}, unexpected {sorted(keys - set(params))[:5]}"
                )
            for name in keys:
                tensors[name] = f.get_tensor(name)
    except (OSError, SafetensorError) as exc:
        raise CheckpointError(f"checkpoint {info.path} cannot be read: {exc}") from exc
    for name, t in tensors.items():  # check everything before touching the model
        if t.shape != params[name].shape:
            raise CheckpointError(
                f"checkpoint {info.path}: {name} has shape {tuple(t.shape)}, "
                f"model has {tuple(params[name].shape)} (different config?)"
            )
    bad = first_non_finite(tensors.items())
    if bad is not None:
        raise CheckpointError(f"checkpoint {info.path}: parameter {bad} holds NaN/inf")
    with torch.no_grad():
        for name, t in tensors.items():
            params[name].copy_(t.to(params[name].device, params[name].dtype))
    return info


def first_non_finite(named: Iterable[tuple[str, torch.Tensor]]) -> str | None:
    """Name of the first tensor holding NaN/inf, or None when all are finite."""
    for name, t in named:
        if not bool(torch.isfinite(t).all()):
            return name
    return None


def nan_free(obj: torch.nn.Module | torch.Tensor | Iterable[Any] | float) -> bool:
    """True when every parameter / tensor / number in obj is finite (validation gate check)."""
    if isinstance(obj, torch.nn.Module):
        return first_non_finite(obj.named_parameters()) is None
    if isinstance(obj, torch.Tensor):
        return bool(torch.isfinite(obj).all())
    if isinstance(obj, int | float):
        return math.isfinite(obj)
    if obj is None:  # an optional output that is absent (HeadOutputs.readout_attention)
        return True
    if isinstance(obj, dict):
        return all(nan_free(v) for v in obj.values())
    if dataclasses.is_dataclass(obj):  # e.g. HeadOutputs
        return all(nan_free(getattr(obj, f.name)) for f in dataclasses.fields(obj))
    return all(nan_free(v) for v in obj)
