// The operator panel's boundary, in plain C++17: what the widget sends (OperatorCommands) and the
// status it shows (the *View structs). The RViz plugin maps these one-to-one onto safari_msgs and
// diagnostic_msgs; the widget and its tests never see ROS.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace safari_rviz
{

// The values of safari_msgs/srv/SetMode, so a Mode goes into SetMode.Request.mode unchanged.
enum class Mode : std::uint8_t { Idle = 0, Execute = 1, Learn = 2, Pause = 3, EStop = 4, Home = 5 };

// The names shield_node publishes on /safari/mode (its MODE_NAMES).
const char * modeName(Mode mode);
std::optional<Mode> modeFromName(const std::string & name);

// safari_msgs/msg/LearnerStatus, the fields the operator reads.
struct LearnerStatusView
{
  double stamp_s = 0.0;            // header.stamp, seconds: the update rate is measured on it
  std::uint64_t updates = 0;
  float lagrange_multiplier = 0.f;  // lambda
  float episode_cost = 0.f;        // episode_cost_estimate: J_c, or the episode cost
  float cost_limit = 0.f;          // delta, or d
  float success_rate = 0.f;        // recent window, 0..1
  std::uint64_t violations = 0;    // cumulative
  std::uint64_t interventions = 0;  // cumulative
  std::uint32_t adapter_version = 0;
};

// safari_msgs/msg/ShieldDecision: one code per check, same values (OK, VIOLATION, NOT_CHECKED).
enum class CheckCode : std::uint8_t { Ok = 0, Violation = 1, NotChecked = 2 };

struct ShieldCheck
{
  std::string name;  // the message's field name: workspace, keep_out, ee_speed, ...
  CheckCode code = CheckCode::NotChecked;
};

struct ShieldDecisionView
{
  std::string proposed_action;
  std::string executed_action;
  bool intervened = false;
  std::vector<ShieldCheck> checks;
  std::string reason;
  float constraint_value = 0.f;      // C(s, proposed action)
  float constraint_threshold = 0.f;  // tau_safe
};

// A check that could not run counts as unsafe (ShieldDecision.msg), so NOT_CHECKED fails too.
std::vector<ShieldCheck> failedChecks(const ShieldDecisionView & decision);

// diagnostic_msgs/msg/DiagnosticStatus levels, same values.
enum class HealthLevel : std::uint8_t { Ok = 0, Warn = 1, Error = 2, Stale = 3 };

struct NodeHealthView
{
  std::string name;  // DiagnosticStatus.name, e.g. "safari/shield"
  HealthLevel level = HealthLevel::Stale;
  std::string message;
};

// The policy's validation gate on the last checkpoint (its diagnostics, or a LoadAdapters reply).
struct CheckpointVerdictView
{
  std::uint32_t version = 0;  // the adapter version the policy runs
  bool accepted = false;
  std::string detail;  // "loaded <path> (version N)" or "refused <path>: <why>"
};

// The reply to a command (SetMode, SetInstruction, LoadAdapters: success and message).
struct CommandResultView
{
  std::string command;  // e.g. "set_mode estop"
  bool success = false;
  std::string message;
};

// Commands out: one method per operator service.
class OperatorCommands
{
public:
  virtual ~OperatorCommands() = default;
  virtual void setMode(Mode mode) = 0;                                  // /safari/set_mode
  virtual void setInstruction(const std::string & instruction) = 0;     // /safari/set_instruction
  virtual void loadAdapters(const std::string & path) = 0;              // /safari/load_adapters
};

}  // namespace safari_rviz
