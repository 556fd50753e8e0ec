// OperatorWidget: the SAFARI operator's controls and readouts, Qt only. Commands go out through
// OperatorCommands; status comes in through the show*() methods (GUI thread). The RViz panel
// (operator_panel.hpp) binds both to ROS; the tests bind them to a recorder.
#pragma once

#include <QColor>
#include <QWidget>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>

#include "safari_rviz/operator_interface.hpp"

class QGroupBox;
class QLabel;
class QLayout;
class QLineEdit;
class QPushButton;
class QTableWidget;
class QTimer;

namespace safari_rviz
{

// Colours of a health level, also used for the readouts that carry one.
namespace colours
{
inline const QColor ok{0x2e, 0x7d, 0x32};
inline const QColor warn{0xf9, 0xa8, 0x25};
inline const QColor error{0xc6, 0x28, 0x28};
inline const QColor stale{0x9e, 0x9e, 0x9e};
}  // namespace colours

QColor colourOf(HealthLevel level);

struct OperatorWidgetOptions
{
  // Monotonic milliseconds; injectable so tests age health without sleeping.
  std::function<std::int64_t()> now_ms;  // empty: the steady clock
  // A node that has not reported for this long is shown stale (grey). The shield and the policy
  // publish their diagnostics once a second, so three missed reports.
  std::int64_t stale_after_ms = 3000;
  int refresh_period_ms = 500;
};

class OperatorWidget : public QWidget
{
  Q_OBJECT

public:
  explicit OperatorWidget(
    OperatorCommands & commands, OperatorWidgetOptions options = {}, QWidget * parent = nullptr);

  // Status in.
  void showMode(Mode reported);
  void showLearnerStatus(const LearnerStatusView & status);
  void showShieldDecision(const ShieldDecisionView & decision);
  void showHealth(const NodeHealthView & health);
  void showCheckpointVerdict(const CheckpointVerdictView & verdict);
  void showCommandResult(const CommandResultView & result);

  // Re-colours what has gone stale; the widget's timer calls it, tests call it after moving
  // their clock.
  void refreshStaleness();

  // True from an e-stop press until the operator chooses another mode here: no status message
  // clears it, since one sent before the e-stop may arrive after it.
  bool estopLatched() const {return estop_latched_;}

private:
  void addModeButton(Mode mode, const QString & label, QLayout * layout);
  void requestMode(Mode mode);
  void sendInstruction();
  void loadAdapters();
  void browseAdapters();
  void renderMode();
  void renderAdapters();
  void renderHealth();
  bool isStale(std::int64_t last_seen_ms) const;

  OperatorCommands & commands_;
  OperatorWidgetOptions options_;

  bool estop_latched_ = false;
  std::optional<Mode> reported_mode_;
  std::optional<LearnerStatusView> last_learner_;
  std::int64_t learner_seen_ms_ = 0;
  std::optional<CheckpointVerdictView> verdict_;
  struct HealthEntry
  {
    NodeHealthView health;
    std::int64_t seen_ms;
  };
  std::map<std::string, HealthEntry> health_;  // by name: rows in a stable order

  QLabel * mode_ = nullptr;
  QLabel * mode_note_ = nullptr;
  QLineEdit * instruction_ = nullptr;
  QPushButton * send_instruction_ = nullptr;
  QLineEdit * adapters_path_ = nullptr;
  QPushButton * load_adapters_ = nullptr;
  QLabel * command_result_ = nullptr;
  QGroupBox * learner_box_ = nullptr;
  QLabel * lambda_ = nullptr;
  QLabel * episode_cost_ = nullptr;
  QLabel * success_rate_ = nullptr;
  QLabel * violations_ = nullptr;
  QLabel * interventions_ = nullptr;
  QLabel * updates_ = nullptr;
  QLabel * adapters_ = nullptr;
  QLabel * checkpoint_detail_ = nullptr;
  QLabel * shield_action_ = nullptr;
  QLabel * shield_reason_ = nullptr;
  QLabel * shield_failed_ = nullptr;
  QTableWidget * health_table_ = nullptr;
  QTimer * refresh_timer_ = nullptr;
};

}  // namespace safari_rviz
