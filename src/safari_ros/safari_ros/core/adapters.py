"""Bottleneck adapters inserted after the attention sub-block of the adapted residual blocks."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ACTIVATIONS", "SafetyAdapter", "TaskAdapter", "make_activation"]

ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU, "tanh": nn.Tanh}


def make_activation(name: str) -> nn.Module:
    """The activation g of the bottleneck, by config name."""
    try:
        return ACTIVATIONS[name.lower()]()
    except KeyError:
        choices = sorted(ACTIVATIONS)
        raise ValueError(f"unknown activation '{name}'; choose from {choices}") from None


class TaskAdapter(nn.Module):
    """h + up(g(down(h))), a bottleneck of width d << hidden size.

    up starts at zero, so an untrained adapter is exactly the identity and training starts from
    the frozen backbone's behaviour.
    """

    def __init__(self, width: int, bottleneck: int, activation: str = "gelu") -> None:
        super().__init__()
        self.down = nn.Linear(width, bottleneck)
        self.act = make_activation(activation)
        self.up = nn.Linear(bottleneck, width)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def residual(self, h: torch.Tensor) -> torch.Tensor:
        """up(g(down(h)))."""
        return self.up(self.act(self.down(h)))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """h + up(g(down(h)))."""
        return h + self.residual(h)


class SafetyAdapter(TaskAdapter):
    """h + up(g(down(h))) * sigmoid(f_safety(h)), f_safety a scalar gate per token.

    The gate lets the safety pathway switch itself on only for tokens that matter to safety.
    """

    def __init__(self, width: int, bottleneck: int, activation: str = "gelu") -> None:
        super().__init__(width, bottleneck, activation)
        self.f_safety = nn.Linear(width, 1)

    def gate(self, h: torch.Tensor) -> torch.Tensor:
        """sigmoid(f_safety(h)), shape (..., 1)."""
        return torch.sigmoid(self.f_safety(h))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """h + up(g(down(h))) * sigmoid(f_safety(h))."""
        return h + self.residual(h) * self.gate(h)
