"""Compute measurements of a run: device choice, peak memory, rough training-memory estimate."""

from __future__ import annotations

import resource
import sys
from pathlib import Path

import torch

__all__ = ["PeakMemory", "estimate_training_memory_mb", "resolve_device"]


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when available, else cpu; anything else as torch spells it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class PeakMemory:
    """Peak memory of a run: CUDA allocator peak on a GPU, else the process's peak resident set.

    On Linux the resident-set peak (VmHWM) is reset at start() through /proc/self/clear_refs, so
    each run gets its own peak even though runs share one process; where that is impossible the
    process-lifetime peak (getrusage) is reported and `scope` says so.
    """

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.scope = "cuda_allocated" if self.cuda else "rss_run"
        self.base_mb = 0.0

    @staticmethod
    def _status_mb(field: str) -> float | None:
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
        except OSError:
            return None
        return None

    def start(self) -> None:
        """Take the baseline now and reset the peak."""
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base_mb = torch.cuda.memory_allocated() / 2**20
            return
        try:
            Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
        except OSError:
            self.scope = "rss_process"
        self.base_mb = self._status_mb("VmRSS") or 0.0

    def peak_mb(self) -> float:
        """Absolute peak since start() (MiB): allocated CUDA memory or resident set."""
        if self.cuda:
            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated() / 2**20
        hwm = self._status_mb("VmHWM") if self.scope == "rss_run" else None
        if hwm is not None:
            return hwm
        # ru_maxrss is KiB on Linux, bytes on macOS
        scale = 1.0 if sys.platform == "darwin" else 1024.0
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20

    def increase_mb(self) -> float:
        """Peak above the baseline of start() (MiB): what the run itself added."""
        return max(0.0, self.peak_mb() - self.base_mb)


def estimate_training_memory_mb(
    n_trainable: int, batch_size: int, backprop_tokens: int, width: int, layers: int
) -> float:
    """Rough upper bound of training memory (MiB) before anything is trained.

    16 bytes per trainable parameter (fp32 weight, gradient, two Adam moments), plus activations
    kept for backward: about 16 floats per token, channel and layer (attention + 4x MLP) for the
    blocks gradients pass through, for the batch of s (s' targets run without gradients).
    """
    params = 16.0 * n_trainable
    activations = 4.0 * 16 * batch_size * backprop_tokens * width * layers
    return (params + activations) / 2**20
