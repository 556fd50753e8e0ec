"""ros2 launch safari_ros tabletop.launch.py [use_sim:=true] [config:=...] [device:=cuda] ...

Starts the SAFARI node graph of config/tabletop.yaml. The node list and parameters come from
safari_ros.graph.node_specs, the same function the sandbox bring-up (safari_bringup) uses, so the
two cannot drift apart. The shield is a lifecycle node: with its `autostart` parameter it
configures and activates itself (in both bring-ups alike); `ros2 lifecycle set /shield_node
deactivate` stops the arm and closes the path to the controller.
"""

from __future__ import annotations

from pathlib import Path

from safari_ros.config import load_config
from safari_ros.graph import PACKAGE, NodeSpec, launch_arguments, node_specs


def default_config_path() -> str:
    """The installed config (share/safari_ros/config/tabletop.yaml), else the source tree's."""
    try:
        from ament_index_python.packages import get_package_share_directory

        return str(Path(get_package_share_directory(PACKAGE)) / "config" / "tabletop.yaml")
    except Exception:
        return str(Path(__file__).resolve().parents[1] / "config" / "tabletop.yaml")


def specs_for(config_path: str, arguments: dict[str, str]) -> list[NodeSpec]:
    """The nodes this launch file starts for the given argument values."""
    return node_specs(load_config(config_path), arguments)


def generate_launch_description():
    """Declare the arguments of config['launch_arguments'] and start the configured nodes."""
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch_ros.actions import LifecycleNode, Node

    declared = launch_arguments(load_config(default_config_path()))

    def start_nodes(context):
        config = context.launch_configurations["config"]
        given = {k: context.launch_configurations[k] for k in declared}
        return [
            (LifecycleNode if spec.lifecycle else Node)(
                package=PACKAGE, executable=spec.executable, name=spec.name, namespace="",
                parameters=[spec.parameters], output="screen",
                prefix=" ".join(spec.prefix) or None)
            for spec in specs_for(config, given)
        ]

    arguments = [DeclareLaunchArgument("config", default_value=default_config_path(),
                                       description="SAFARI config YAML")]
    arguments += [DeclareLaunchArgument(k, default_value=v["default"], description=v["description"])
                  for k, v in declared.items()]
    return LaunchDescription([*arguments, OpaqueFunction(function=start_nodes)])
