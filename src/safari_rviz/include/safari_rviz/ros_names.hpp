// The ROS names the operator panel binds to. The topics are those of config/tabletop.yaml's
// `topics:` section; the services and /safari/mode are those the nodes serve and publish.
// test/rviz/test_panel_bindings.py checks both, since the plugin cannot be built everywhere.
#pragma once

namespace safari_rviz::names
{
inline constexpr char kLearnerStatus[] = "/safari/learner/status";
inline constexpr char kShieldDecision[] = "/safari/shield/decision";
inline constexpr char kDiagnostics[] = "/diagnostics";
inline constexpr char kMode[] = "/safari/mode";                       // shield_node, latched
inline constexpr char kSetMode[] = "/safari/set_mode";                // shield_node
inline constexpr char kSetInstruction[] = "/safari/set_instruction";  // perception_node
inline constexpr char kLoadAdapters[] = "/safari/load_adapters";      // policy_node
// policy_node's DiagnosticStatus: its message is the last hot-swap's verdict.
inline constexpr char kPolicyStatus[] = "safari/policy";
}  // namespace safari_rviz::names
