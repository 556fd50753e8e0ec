"""The RViz panel plugin (src/safari_rviz/src/operator_panel.cpp) cannot be compiled here (no
rviz_common, rclcpp), so these checks read its sources: every name, field, mode and plugin class it
binds must exist in the interfaces and config it binds to."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "src" / "safari_rviz"
MSGS = REPO / "src" / "safari_msgs"
NODES = REPO / "src" / "safari_ros" / "safari_ros" / "nodes"
PANEL = (PACKAGE / "src" / "operator_panel.cpp").read_text()


def ros_names() -> dict[str, str]:
    text = (PACKAGE / "include" / "safari_rviz" / "ros_names.hpp").read_text()
    return dict(re.findall(r'inline constexpr char (\w+)\[\] = "([^"]+)"', text))


def msg_fields(relative: str) -> set[str]:
    """Field names of a .msg file (constants, with '=', excluded)."""
    fields = set()
    for line in (MSGS / relative).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and "=" not in line:
            fields.add(line.split()[1])
    return fields


def test_topics_are_those_of_the_config() -> None:
    topics = yaml.safe_load((REPO / "config" / "tabletop.yaml").read_text())["topics"]
    names = ros_names()
    assert names["kLearnerStatus"] == topics["learner_status"]
    assert names["kShieldDecision"] == topics["shield_decision"]
    assert names["kDiagnostics"] == topics["diagnostics"]


def test_services_mode_topic_and_policy_status_are_those_the_nodes_serve() -> None:
    sources = "".join(path.read_text() for path in NODES.glob("*.py"))
    for key in ("kMode", "kSetMode", "kSetInstruction", "kLoadAdapters", "kPolicyStatus"):
        assert f'"{ros_names()[key]}"' in sources, key


def test_panel_reads_only_real_message_fields() -> None:
    for variable, msg in (("learner_msg", "msg/LearnerStatus.msg"),
                          ("decision_msg", "msg/ShieldDecision.msg")):
        used = set(re.findall(rf"\b{variable}\.(\w+)", PANEL))
        assert used, variable
        assert used <= msg_fields(msg), used - msg_fields(msg)


def test_panel_shows_every_shield_check() -> None:
    text = (MSGS / "msg" / "ShieldDecision.msg").read_text()
    checks = set(re.findall(r"^uint8 (\w+)\s", text, re.MULTILINE))
    assert checks == set(re.findall(r'\{"(\w+)", decision_msg\.\1\}', PANEL))


def test_modes_match_set_mode_and_the_shields_names() -> None:
    srv = dict(re.findall(r"^uint8 ([A-Z]+)=(\d+)", (MSGS / "srv" / "SetMode.srv").read_text(),
                          re.MULTILINE))
    header = (PACKAGE / "include" / "safari_rviz" / "operator_interface.hpp").read_text()
    enum = dict(re.findall(r"(\w+) = (\d+)", re.search(r"enum class Mode[^}]+", header)[0]))
    assert {k.upper(): v for k, v in enum.items()} == srv
    shield = (NODES / "shield_node.py").read_text()
    shield_names = dict(re.findall(r'SetMode\.Request\.(\w+): "(\w+)"', shield))
    widget_names = dict(re.findall(r'\{Mode::(\w+), "(\w+)"\}',
                                   (PACKAGE / "src" / "operator_interface.cpp").read_text()))
    assert {k.upper(): v for k, v in widget_names.items()} == shield_names


def test_plugin_class_is_exported_and_opened_by_the_rviz_config() -> None:
    description = (PACKAGE / "plugin_description.xml").read_text()
    name, cpp_type = re.search(r'<class name="([^"]+)" type="([^"]+)"', description).groups()
    assert f"PLUGINLIB_EXPORT_CLASS({cpp_type}, rviz_common::Panel)" in PANEL
    assert re.search(r'<library path="(\w+)">', description)[1] in (
        PACKAGE / "CMakeLists.txt").read_text()
    panels = yaml.safe_load((REPO / "config" / "safari.rviz").read_text())["Panels"]
    assert name in {panel["Class"] for panel in panels}
