"""Shared test set-up: the source tree on sys.path, headless rendering, a private DDS domain."""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src" / "safari_ros"))
sys.path.insert(0, str(REPO / "test"))
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
