"""A rosbags type store that knows the standard ROS 2 Kilted types and every safari_msgs type.

The safari_msgs definitions are read from the package's own .msg/.srv/.action files (the source
tree, or the installed share directory), never copied, so a bag and a live topic cannot disagree.
Services and actions are registered part by part under rosidl's names (``SetMode_Request``,
``RunEpisode_Goal`` ...); rosbags files service parts under ``safari_msgs/srv/msg/...``
(see ``bag_type_name``).
"""

from __future__ import annotations

import functools
from pathlib import Path

from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.msg import normalize_msgtype
from rosbags.typesys.store import Typestore

PACKAGE = "safari_msgs"
_SOURCE_DIR = Path(__file__).resolve().parents[4] / "src" / PACKAGE
PARTS = {
    "msg": [""],
    "srv": ["_Request", "_Response"],
    "action": ["_Goal", "_Result", "_Feedback"],
}


def interface_dir() -> Path:
    """Directory holding msg/, srv/, action/ of safari_msgs: the source tree, else the install."""
    if (_SOURCE_DIR / "msg").is_dir():
        return _SOURCE_DIR
    from ament_index_python.packages import get_package_share_directory

    return Path(get_package_share_directory(PACKAGE))


def interface_definitions(root: Path | None = None) -> dict[str, str]:
    """Map of rosidl type name (``safari_msgs/msg/Observation``) to its message definition text."""
    root = root or interface_dir()
    defs: dict[str, str] = {}
    for kind, suffixes in PARTS.items():
        for path in sorted((root / kind).glob(f"*.{kind}")):
            sections = path.read_text().split("\n---\n")
            if len(sections) != len(suffixes):
                raise ValueError(f"{path}: expected {len(suffixes)} sections separated by '---'")
            for suffix, text in zip(suffixes, sections, strict=True):
                defs[bag_type_name(f"{PACKAGE}/{kind}/{path.stem}{suffix}")] = text
    if not defs:
        raise FileNotFoundError(f"no safari_msgs interface files under {root}")
    return defs


def bag_type_name(rosidl_name: str) -> str:
    """The name rosbags stores a rosidl type under (``pkg/srv/X_Request`` -> ``pkg/srv/msg/..``)."""
    return normalize_msgtype(rosidl_name)


@functools.cache
def safari_typestore() -> Typestore:
    """The ROS 2 Kilted type store with every safari_msgs type registered (cached)."""
    store = get_typestore(Stores.ROS2_KILTED)
    types = {}
    for name, text in interface_definitions().items():
        types.update(get_types_from_msg(text, name))
    store.register(types)
    return store
