"""Tensor containers shared by the model, the replay buffer and SCAPO."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import torch

__all__ = ["STATE_FIELDS", "StateBatch", "TransitionBatch"]

# The parts of a state s: layer-k tokens (B, N, D), lifted depth (B, 4G), proprioception (B, P),
# instruction text embedding (B, E).
STATE_FIELDS = ("tokens", "depth", "proprio", "instruction")


@dataclass
class StateBatch:
    """A batch of states as the suffix + heads consume them (the prefix already applied)."""

    tokens: torch.Tensor
    depth: torch.Tensor
    proprio: torch.Tensor
    instruction: torch.Tensor

    def to(self, device: torch.device | str, dtype: torch.dtype = torch.float32) -> StateBatch:
        """Copy to a device as float (replay may hold float16)."""
        return StateBatch(*(getattr(self, f).to(device=device, dtype=dtype) for f in STATE_FIELDS))

    def __len__(self) -> int:
        return int(self.tokens.shape[0])

    @classmethod
    def concat(cls, parts: Sequence[StateBatch]) -> StateBatch:
        """The states of several batches, in order."""
        return cls(*(torch.cat([getattr(p, f) for p in parts]) for f in STATE_FIELDS))


@dataclass
class TransitionBatch:
    """A batch of transitions (s, a, r, c, s', done) for one SCAPO / pre-training update."""

    state: StateBatch
    action: torch.Tensor  # (B,) long: the executed action (what reward and cost belong to)
    reward: torch.Tensor  # (B,)
    cost: torch.Tensor  # (B,) in [0, 1]
    next_state: StateBatch
    done: torch.Tensor  # (B,) 1.0 where s' is terminal (no bootstrap)
    success: torch.Tensor  # (B,) 1.0 for steps of successful episodes (behaviour cloning)
    behaviour_prob: torch.Tensor  # (B,) pi_old(a|s) of the acting policy
    # (B, 2) base-frame x, y (m) of the object the instruction names, NaN where unknown: the
    # hindsight labels of pre-training's grounding term (pretrain/features.py); None online
    ground: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> TransitionBatch:
        """Copy to a device; states as float32, action as long, scalars as float32."""
        kw = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, StateBatch):
                kw[f.name] = v.to(device)
            elif v is None:
                kw[f.name] = None
            elif f.name == "action":
                kw[f.name] = v.to(device=device, dtype=torch.long)
            else:
                kw[f.name] = v.to(device=device, dtype=torch.float32)
        return TransitionBatch(**kw)

    def __len__(self) -> int:
        return int(self.action.shape[0])

    @classmethod
    def concat(cls, parts: Sequence[TransitionBatch]) -> TransitionBatch:
        """The transitions of several batches, in order (`ground` kept only if all have it)."""
        kw = {}
        for f in dataclasses.fields(cls):
            values = [getattr(p, f.name) for p in parts]
            if isinstance(values[0], StateBatch):
                kw[f.name] = StateBatch.concat(values)
            elif any(v is None for v in values):
                kw[f.name] = None
            else:
                kw[f.name] = torch.cat(values)
        return cls(**kw)
