"""Gymnasium environment `SafariTabletop-v0` over TabletopSim.

Discrete actions = config `actions.set`; observation Dict(rgb, depth, proprio); `info` carries the
safety cost c_t with its sources, success and the instruction. Seeded and deterministic, so it
works under gymnasium.vector.SyncVectorEnv.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from safari_ros.config import load_config
from safari_ros.sim.tabletop import TabletopSim


class SafariTabletopEnv(gym.Env):
    """The tabletop as a Gymnasium env; one step = one primitive over 1 / sim.control_hz."""

    metadata = {"render_modes": ["rgb_array"]}  # noqa: RUF012 - Gymnasium's declared shape

    def __init__(
        self,
        config: dict[str, Any] | str | None = None,
        split: str = "train",
        template: str | None = None,
        render_images: bool = True,
        render_mode: str | None = None,
    ) -> None:
        """config: a loaded config, a path, or None for the default. template fixes the task
        template (push / touch / lift); render_images=False returns zero images (fast steps)."""
        cfg = config if isinstance(config, dict) else load_config(config)
        self.sim = TabletopSim(cfg, split=split)
        self.template = template
        self.render_images = render_images
        self.render_mode = render_mode
        cam = cfg["sim"]["camera"]
        h, w = int(cam["height"]), int(cam["width"])
        self.action_space = spaces.Discrete(len(self.sim.actions))
        self.observation_space = spaces.Dict({
            "rgb": spaces.Box(0, 255, (h, w, 3), np.uint8),
            "depth": spaces.Box(0.0, np.inf, (h, w), np.float32),
            "proprio": spaces.Box(-np.inf, np.inf, (21,), np.float32),
            "camera_k": spaces.Box(0.0, np.inf, (3, 3), np.float64),  # CameraInfo.k
        })
        self._last_rgb: np.ndarray | None = None

    def _obs(self) -> dict[str, np.ndarray]:
        space = self.observation_space
        if self.render_images:
            rgb, depth = self.sim.render_rgbd()
        else:
            rgb = np.zeros(space["rgb"].shape, np.uint8)
            depth = np.zeros(space["depth"].shape, np.float32)
        self._last_rgb = rgb
        return {"rgb": rgb, "depth": depth, "proprio": self.sim.proprio(),
                "camera_k": self.sim.camera_matrix()}

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """options: {"task": TaskSpec or instruction text, "template": ..., "split": ...}."""
        super().reset(seed=seed)
        options = options or {}
        # Episode seeds come from the env's generator, so seed=None continues the sequence.
        episode_seed = int(self.np_random.integers(2**31))
        self.sim.reset(
            seed=episode_seed,
            task=options.get("task"),
            template=options.get("template", self.template),
            split=options.get("split"),
        )
        info = {"instruction": self.sim.instruction, "cost": 0, "success": False,
                "cost_sources": dict.fromkeys(self.sim.cost_sources(), 0)}
        return self._obs(), info

    def step(
        self, action: int
    ) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        """One primitive; terminated on success, truncated after sim.episode_steps."""
        report = self.sim.step(int(action))
        info = {"instruction": self.sim.instruction, "cost": report.cost,
                "cost_sources": report.cost_sources, "success": report.success,
                "sim_time": report.sim_time}
        truncated = self.sim.steps >= self.sim.episode_steps and not report.success
        return self._obs(), report.reward, report.success, truncated, info

    def render(self) -> np.ndarray | None:
        """The last colour image (rendered now when images are off)."""
        if self.render_mode != "rgb_array":
            return None
        return self._last_rgb if self.render_images else self.sim.render_rgbd()[0]

    def close(self) -> None:
        """Release the GL context."""
        self.sim.close()
