#include "safari_rviz/operator_interface.hpp"

#include <array>
#include <utility>

namespace safari_rviz
{

namespace
{
constexpr std::array<std::pair<Mode, const char *>, 6> kModeNames{{
  {Mode::Idle, "idle"}, {Mode::Execute, "execute"}, {Mode::Learn, "learn"},
  {Mode::Pause, "pause"}, {Mode::EStop, "estop"}, {Mode::Home, "home"}}};
}  // namespace

const char * modeName(Mode mode)
{
  for (const auto & [value, name] : kModeNames) {
    if (value == mode) {
      return name;
    }
  }
  return "unknown";
}

std::optional<Mode> modeFromName(const std::string & name)
{
  for (const auto & [value, known] : kModeNames) {
    if (name == known) {
      return value;
    }
  }
  return std::nullopt;
}

std::vector<ShieldCheck> failedChecks(const ShieldDecisionView & decision)
{
  std::vector<ShieldCheck> failed;
  for (const auto & check : decision.checks) {
    if (check.code != CheckCode::Ok) {
      failed.push_back(check);
    }
  }
  return failed;
}

}  // namespace safari_rviz
