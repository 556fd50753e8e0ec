"""Replay buffer of transitions whose states are cached layer-k prefix tokens, not images.

FIFO ring buffer bounded both by a transition count and by memory (the smaller bound wins);
tokens and instruction embeddings are stored as float16 when `store_float16` (CLIP's residual
stream fits float16's range; the relative rounding error ~5e-4 is far below the adapters' noise).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from safari_ros.core.batch import STATE_FIELDS, StateBatch, TransitionBatch
from safari_ros.core.hparams import ReplayConfig

__all__ = ["ReplayBuffer", "ReplayError", "Transition", "refusal_transition"]

FORMAT = "safari-replay"
FORMAT_VERSION = "1"
_HALF_FIELDS = ("tokens", "instruction")  # large per-state arrays stored as float16 if asked
_SCALARS = {
    "action": np.int64,
    "reward": np.float32,
    "cost": np.float32,
    "done": np.float32,
    "success": np.float32,
    "behaviour_prob": np.float32,
}


class ReplayError(RuntimeError):
    """A transition does not fit the buffer, or a saved buffer cannot be read."""


@dataclass
class Transition:
    """One step (s, a, r, c, s', done) with s = (tokens, depth, proprio, instruction)."""

    tokens: np.ndarray  # (N, D) layer-k tokens of s
    depth: np.ndarray  # (G,)
    proprio: np.ndarray  # (P,)
    instruction: np.ndarray  # (E,)
    action: int  # executed action index
    reward: float
    cost: float
    next_tokens: np.ndarray
    next_depth: np.ndarray
    next_proprio: np.ndarray
    next_instruction: np.ndarray
    done: bool
    success: bool = False
    behaviour_prob: float = 1.0


def refusal_transition(executed: Transition, refused_action: int, behaviour_prob: float,
                       penalty: float) -> Transition:
    """A proposal the shield refused for a hard limit, as a transition of its own.

    Same state and next state as the step the arm made, but the refused action, reward -penalty
    and cost 1, so that pi, Q_r, Q_c and C learn not to propose it: the shield's punishment of
    Alshiekh et al. (2018). Only hard-limit refusals qualify; refusals by the learned check or the
    watchdog would teach C its own guesses.
    """
    if not penalty > 0:
        raise ValueError(f"a refusal penalty must be > 0, got {penalty}")
    return replace(executed, action=int(refused_action), reward=-float(penalty), cost=1.0,
                   behaviour_prob=float(behaviour_prob))


def _array_fields() -> list[str]:
    return [*STATE_FIELDS, *(f"next_{f}" for f in STATE_FIELDS)]


class ReplayBuffer:
    """FIFO replay of Transitions with seeded batch sampling and safetensors save/load."""

    def __init__(
        self,
        capacity_transitions: int,
        memory_limit_mb: float,
        store_float16: bool = True,
        seed: int = 0,
        backbone_id: str = "",
    ) -> None:
        if capacity_transitions < 1:
            raise ReplayError("capacity_transitions must be >= 1")
        self.max_transitions = int(capacity_transitions)
        self.memory_limit_bytes = int(memory_limit_mb * 2**20)
        self.store_float16 = store_float16
        self.backbone_id = backbone_id
        self.rng = np.random.default_rng(seed)
        self.capacity = 0  # set from the first transition's shapes
        self._data: dict[str, np.ndarray] = {}
        self._next = 0
        self._size = 0
        self.added = 0  # transitions ever added
        self.evicted = 0  # transitions dropped by FIFO eviction

    @classmethod
    def from_config(cls, hp: ReplayConfig, backbone_id: str = "") -> ReplayBuffer:
        """Empty buffer with the bounds of `learning.replay`."""
        return cls(
            hp.capacity_transitions,
            hp.memory_limit_mb,
            hp.store_float16,
            hp.sampling_seed,
            backbone_id,
        )

    # ---------------------------------------------------------------------------- storage
    def _dtype(self, name: str) -> np.dtype:
        if name in _SCALARS:
            return np.dtype(_SCALARS[name])
        base = name.removeprefix("next_")
        return np.dtype(np.float16 if self.store_float16 and base in _HALF_FIELDS else np.float32)

    def _allocate(self, t: Transition) -> None:
        shapes = {f: np.shape(getattr(t, f)) for f in _array_fields()}
        shapes.update({f: () for f in _SCALARS})
        per = sum(int(np.prod(s)) * self._dtype(f).itemsize for f, s in shapes.items())
        fit = self.memory_limit_bytes // per
        if fit < 1:
            raise ReplayError(
                f"one transition needs {per} bytes, more than memory_limit_mb allows "
                f"({self.memory_limit_bytes / 2**20:.3f} MiB)"
            )
        self.capacity = int(min(self.max_transitions, fit))
        self.bytes_per_transition = per
        # np.empty: pages become resident only when written, so memory grows with use
        self._data = {f: np.empty((self.capacity, *s), self._dtype(f)) for f, s in shapes.items()}

    @property
    def nbytes(self) -> int:
        """Bytes reserved by the storage arrays (upper bound of the buffer's memory)."""
        return sum(a.nbytes for a in self._data.values())

    def __len__(self) -> int:
        return self._size

    def add(self, t: Transition) -> None:
        """Append a transition; the oldest one is evicted when the buffer is full."""
        if not self._data:
            self._allocate(t)
        i = self._next
        for f in _array_fields():
            value = np.asarray(getattr(t, f))
            store = self._data[f]
            if value.shape != store.shape[1:]:
                raise ReplayError(f"{f}: shape {value.shape} != buffer's {store.shape[1:]}")
            with np.errstate(over="ignore"):  # overflow is caught just below
                cast = value.astype(store.dtype, copy=False)
            if not np.isfinite(cast).all():  # NaN/inf (or float16 overflow) never enters training
                raise ReplayError(f"{f}: non-finite values (or outside {store.dtype}'s range)")
            store[i] = cast
        for f in _SCALARS:
            self._data[f][i] = getattr(t, f)
        if self._size == self.capacity:
            self.evicted += 1
        self._size = min(self._size + 1, self.capacity)
        self._next = (i + 1) % self.capacity
        self.added += 1

    def _order(self) -> np.ndarray:
        """Storage indices from oldest to newest."""
        start = (self._next - self._size) % max(self.capacity, 1)
        return (start + np.arange(self._size)) % max(self.capacity, 1)

    # --------------------------------------------------------------------------- sampling
    def batch_at(self, idx: np.ndarray) -> TransitionBatch:
        """The transitions at storage indices idx as a CPU TransitionBatch."""

        def state(prefix: str) -> StateBatch:
            return StateBatch(
                *(torch.from_numpy(self._data[prefix + f][idx]) for f in STATE_FIELDS)
            )

        scalars = {f: torch.from_numpy(self._data[f][idx]) for f in _SCALARS}
        return TransitionBatch(state=state(""), next_state=state("next_"), **scalars)

    def sample(self, batch_size: int, device: str | torch.device | None = None) -> TransitionBatch:
        """Uniform batch (with replacement only if the buffer is smaller than the batch)."""
        if self._size == 0:
            raise ReplayError("cannot sample from an empty replay buffer")
        idx = self.rng.choice(self._size, size=batch_size, replace=batch_size > self._size)
        batch = self.batch_at(self._order()[idx])
        return batch.to(device) if device is not None else batch

    # ------------------------------------------------------------------------- persistence
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the transitions (oldest first) to a safetensors file, atomically."""
        path = Path(path)
        order = self._order()
        tensors = {f: np.ascontiguousarray(a[order]) for f, a in self._data.items()}
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "backbone_id": self.backbone_id,
            "store_float16": json.dumps(self.store_float16),
            "count": str(self._size),
        }
        tmp = path.with_name(path.name + ".tmp")
        save_file(tensors, str(tmp), metadata=meta)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        capacity_transitions: int,
        memory_limit_mb: float,
        seed: int = 0,
        backbone_id: str | None = None,
    ) -> ReplayBuffer:
        """Read a saved buffer; refuses one recorded with another backbone (if given)."""
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="numpy") as f:
                meta = f.metadata() or {}
            arrays = load_file(str(path))
        except (OSError, SafetensorError) as exc:
            raise ReplayError(f"cannot read replay file {path}: {exc}") from exc
        if meta.get("format") != FORMAT:
            raise ReplayError(f"{path} is not a SAFARI replay file (format={meta.get('format')})")
        if backbone_id is not None and meta.get("backbone_id") != backbone_id:
            raise ReplayError(
                f"{path} holds tokens of backbone {meta.get('backbone_id')!r}, not {backbone_id!r}"
            )
        buf = cls(
            capacity_transitions,
            memory_limit_mb,
            json.loads(meta["store_float16"]),
            seed,
            meta.get("backbone_id", ""),
        )
        n = int(meta["count"])
        for i in range(n):  # through add(): same bounds and eviction as live data
            buf.add(Transition(**{f: arrays[f][i] for f in arrays}))
        return buf
