"""ament_python build of safari_ros: the ROS-free core, the nodes and the command-line tools."""

import os
from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "safari_ros"
HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def _data_files() -> list[tuple[str, list[str]]]:
    """Launch file, configs and the backbone (models/) from the repository root, installed
    where ros2 launch looks; config/tabletop.yaml names ../models relative to itself."""
    files = [
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
    ]
    for folder in ("launch", "config", "models"):
        # colcon wants data_files relative to this file
        found = sorted(
            os.path.relpath(p, HERE) for p in (REPO / folder).glob("*") if p.is_file()
        )
        if found:
            files.append((f"share/{PACKAGE}/{folder}", found))
    return files


# Every node and tool; names here are what `ros2 run safari_ros <name>` and the bring-up call.
CONSOLE_SCRIPTS = [
    *(f"{node} = safari_ros.nodes.{node}:main" for node in (
        "sim_node", "perception_node", "policy_node", "shield_node", "learner_node",
    )),
    "safari_bringup = safari_ros.bringup:main",
    "safari_tabletop = safari_ros.tabletop_run:main",
    "safari_evaluate = safari_ros.evaluation.cli:main",
    "safari_pretrain = safari_ros.pretrain.cli:main",
    "bag_player = safari_ros.nodes.bag_player:main",
]

setup(
    name=PACKAGE,
    version="0.3.2",
    packages=find_packages(exclude=["test"]),
    package_data={PACKAGE: ["evaluation/model_configs/*.json"]},
    data_files=_data_files(),
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="SAFARI developers",
    maintainer_email="safari-dev@example.org",
    description="Safety-guided adapters for a frozen VLM, learned on the robot with SCAPO.",
    license="Apache-2.0",
    entry_points={"console_scripts": CONSOLE_SCRIPTS},
)
