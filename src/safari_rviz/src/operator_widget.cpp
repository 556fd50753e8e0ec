#include "safari_rviz/operator_widget.hpp"

#include <QFileDialog>
#include <QFont>
#include <QFormLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QLineEdit>
#include <QPushButton>
#include <QTableWidget>
#include <QTimer>
#include <QVBoxLayout>

#include <chrono>

namespace safari_rviz
{

namespace
{

std::int64_t steadyNowMs()
{
  using namespace std::chrono;
  return duration_cast<milliseconds>(steady_clock::now().time_since_epoch()).count();
}

QString toQt(const std::string & text) {return QString::fromStdString(text);}

// Text on a coloured background; an invalid colour clears it.
void paint(QLabel * label, const QColor & background)
{
  label->setStyleSheet(
    background.isValid() ?
    QStringLiteral("QLabel { background: %1; color: white; padding: 0px 3px; }").arg(background.name()) :
    QString());
}

const char * levelName(HealthLevel level)
{
  switch (level) {
    case HealthLevel::Ok: return "ok";
    case HealthLevel::Warn: return "warn";
    case HealthLevel::Error: return "error";
    case HealthLevel::Stale: return "stale";
  }
  return "unknown";
}

const char * codeName(CheckCode code)
{
  return code == CheckCode::Violation ? "violation" : code == CheckCode::NotChecked ? "not checked" :
         "ok";
}

QLabel * readout(const char * name)
{
  auto * label = new QLabel(QStringLiteral("—"));
  label->setObjectName(QString::fromLatin1(name));
  label->setTextInteractionFlags(Qt::TextSelectableByMouse);
  return label;
}

}  // namespace

QColor colourOf(HealthLevel level)
{
  switch (level) {
    case HealthLevel::Ok: return colours::ok;
    case HealthLevel::Warn: return colours::warn;
    case HealthLevel::Error: return colours::error;
    case HealthLevel::Stale: return colours::stale;
  }
  return colours::stale;
}

OperatorWidget::OperatorWidget(
  OperatorCommands & commands, OperatorWidgetOptions options, QWidget * parent)
: QWidget(parent), commands_(commands), options_(std::move(options))
{
  if (!options_.now_ms) {
    options_.now_ms = steadyNowMs;
  }
  auto * root = new QVBoxLayout(this);

  // The e-stop comes first, is large, and is never disabled: it must work from every mode.
  auto * estop = new QPushButton(QStringLiteral("E-STOP"));
  estop->setObjectName(QStringLiteral("estop"));
  estop->setMinimumHeight(64);
  estop->setStyleSheet(QStringLiteral(
      "QPushButton { background: #c62828; color: white; font-size: 24px; font-weight: bold; }"));
  connect(estop, &QPushButton::clicked, this, [this] {requestMode(Mode::EStop);});
  root->addWidget(estop);

  auto * modes = new QHBoxLayout;
  addModeButton(Mode::Idle, tr("Idle"), modes);
  addModeButton(Mode::Execute, tr("Execute"), modes);
  addModeButton(Mode::Learn, tr("Learn"), modes);
  addModeButton(Mode::Pause, tr("Pause"), modes);
  addModeButton(Mode::Home, tr("Home"), modes);
  root->addLayout(modes);

  mode_ = readout("mode");
  QFont mode_font = mode_->font();  // a font, not a style sheet: paint() owns the style sheet
  mode_font.setPointSize(mode_font.pointSize() + 4);
  mode_font.setBold(true);
  mode_->setFont(mode_font);
  mode_note_ = readout("mode_note");
  mode_note_->clear();
  auto * mode_row = new QHBoxLayout;
  mode_row->addWidget(new QLabel(tr("Mode:")));
  mode_row->addWidget(mode_, 1);
  root->addLayout(mode_row);
  root->addWidget(mode_note_);

  instruction_ = new QLineEdit;
  instruction_->setObjectName(QStringLiteral("instruction"));
  instruction_->setPlaceholderText(tr("instruction, e.g. lift the red cube"));
  send_instruction_ = new QPushButton(tr("Send"));
  send_instruction_->setObjectName(QStringLiteral("send_instruction"));
  send_instruction_->setEnabled(false);
  connect(instruction_, &QLineEdit::textChanged, this, [this](const QString & text) {
      send_instruction_->setEnabled(!text.trimmed().isEmpty());
    });
  connect(instruction_, &QLineEdit::returnPressed, this, &OperatorWidget::sendInstruction);
  connect(send_instruction_, &QPushButton::clicked, this, &OperatorWidget::sendInstruction);
  auto * instruction_row = new QHBoxLayout;
  instruction_row->addWidget(instruction_, 1);
  instruction_row->addWidget(send_instruction_);
  root->addLayout(instruction_row);

  adapters_path_ = new QLineEdit;
  adapters_path_->setObjectName(QStringLiteral("adapters_path"));
  adapters_path_->setPlaceholderText(tr("adapter checkpoint (.safetensors)"));
  auto * browse = new QPushButton(tr("Browse…"));
  browse->setObjectName(QStringLiteral("browse_adapters"));
  load_adapters_ = new QPushButton(tr("Load adapters"));
  load_adapters_->setObjectName(QStringLiteral("load_adapters"));
  load_adapters_->setEnabled(false);
  connect(adapters_path_, &QLineEdit::textChanged, this, [this](const QString & text) {
      load_adapters_->setEnabled(!text.trimmed().isEmpty());
    });
  connect(browse, &QPushButton::clicked, this, &OperatorWidget::browseAdapters);
  connect(load_adapters_, &QPushButton::clicked, this, &OperatorWidget::loadAdapters);
  auto * adapters_row = new QHBoxLayout;
  adapters_row->addWidget(adapters_path_, 1);
  adapters_row->addWidget(browse);
  adapters_row->addWidget(load_adapters_);
  root->addLayout(adapters_row);

  command_result_ = readout("command_result");
  command_result_->clear();
  command_result_->setWordWrap(true);
  root->addWidget(command_result_);

  learner_box_ = new QGroupBox(tr("Learner"));
  learner_box_->setObjectName(QStringLiteral("learner"));
  auto * learner = new QFormLayout(learner_box_);
  learner->addRow(tr("lambda"), lambda_ = readout("lambda"));
  learner->addRow(tr("episode cost / limit"), episode_cost_ = readout("episode_cost"));
  learner->addRow(tr("success rate"), success_rate_ = readout("success_rate"));
  learner->addRow(tr("violations (total)"), violations_ = readout("violations"));
  learner->addRow(tr("interventions (total)"), interventions_ = readout("interventions"));
  learner->addRow(tr("updates"), updates_ = readout("updates"));
  learner->addRow(tr("adapters"), adapters_ = readout("adapters"));
  learner->addRow(tr("last checkpoint"), checkpoint_detail_ = readout("checkpoint_detail"));
  checkpoint_detail_->setWordWrap(true);
  root->addWidget(learner_box_);

  auto * shield_box = new QGroupBox(tr("Last shield decision"));
  auto * shield = new QFormLayout(shield_box);
  shield->addRow(tr("action"), shield_action_ = readout("shield_action"));
  shield->addRow(tr("reason"), shield_reason_ = readout("shield_reason"));
  shield->addRow(tr("failed checks"), shield_failed_ = readout("shield_failed"));
  shield_reason_->setWordWrap(true);
  root->addWidget(shield_box);

  auto * health_box = new QGroupBox(tr("Node health (/diagnostics)"));
  auto * health = new QVBoxLayout(health_box);
  health_table_ = new QTableWidget(0, 4);
  health_table_->setObjectName(QStringLiteral("health"));
  health_table_->setHorizontalHeaderLabels({tr("name"), tr("level"), tr("message"), tr("age")});
  health_table_->horizontalHeader()->setSectionResizeMode(2, QHeaderView::Stretch);
  health_table_->verticalHeader()->hide();
  health_table_->setEditTriggers(QAbstractItemView::NoEditTriggers);
  health_table_->setMinimumHeight(160);  // a handful of nodes without scrolling
  health->addWidget(health_table_);
  root->addWidget(health_box, 1);

  renderMode();
  refresh_timer_ = new QTimer(this);
  connect(refresh_timer_, &QTimer::timeout, this, &OperatorWidget::refreshStaleness);
  refresh_timer_->start(options_.refresh_period_ms);
}

void OperatorWidget::addModeButton(Mode mode, const QString & label, QLayout * layout)
{
  auto * button = new QPushButton(label);
  button->setObjectName(QStringLiteral("mode_%1").arg(QString::fromLatin1(modeName(mode))));
  connect(button, &QPushButton::clicked, this, [this, mode] {requestMode(mode);});
  layout->addWidget(button);
}

void OperatorWidget::requestMode(Mode mode)
{
  // Only the operator's own choice here moves the latch: pressing e-stop sets it, choosing any
  // other mode is the explicit change that SetMode requires to leave e-stop.
  estop_latched_ = mode == Mode::EStop;
  commands_.setMode(mode);
  renderMode();
}

void OperatorWidget::sendInstruction()
{
  const QString text = instruction_->text().trimmed();
  if (!text.isEmpty()) {
    commands_.setInstruction(text.toStdString());
  }
}

void OperatorWidget::loadAdapters()
{
  const QString path = adapters_path_->text().trimmed();
  if (!path.isEmpty()) {
    commands_.loadAdapters(path.toStdString());
  }
}

void OperatorWidget::browseAdapters()
{
  // Only fills the field: loading stays a separate, explicit press.
  const QString path = QFileDialog::getOpenFileName(
    this, tr("Adapter checkpoint"), adapters_path_->text(), tr("Adapters (*.safetensors)"));
  if (!path.isEmpty()) {
    adapters_path_->setText(path);
  }
}

void OperatorWidget::showMode(Mode reported)
{
  reported_mode_ = reported;
  renderMode();
}

void OperatorWidget::renderMode()
{
  const QString reported =
    reported_mode_ ? QString::fromLatin1(modeName(*reported_mode_)) : tr("no report yet");
  if (estop_latched_) {
    mode_->setText(tr("E-STOP"));
    paint(mode_, colours::error);
    mode_note_->setText(
      reported_mode_ == Mode::EStop ? tr("confirmed by the shield") :
      tr("sent; the shield still reports: %1").arg(reported));
    return;
  }
  mode_note_->clear();
  if (!reported_mode_) {
    mode_->setText(reported);
    paint(mode_, colours::stale);
    return;
  }
  mode_->setText(reported.toUpper());
  paint(mode_, *reported_mode_ == Mode::EStop ? colours::error : QColor());
}

void OperatorWidget::showLearnerStatus(const LearnerStatusView & status)
{
  lambda_->setText(QString::number(status.lagrange_multiplier, 'f', 3));
  const bool over = status.episode_cost > status.cost_limit;
  episode_cost_->setText(
    QStringLiteral("%1 / %2%3").arg(status.episode_cost, 0, 'f', 2).arg(status.cost_limit, 0, 'f', 2)
    .arg(over ? tr("  over the limit") : QString()));
  paint(episode_cost_, over ? colours::error : colours::ok);
  success_rate_->setText(QStringLiteral("%1 %").arg(100.0 * status.success_rate, 0, 'f', 0));
  violations_->setText(QString::number(status.violations));
  interventions_->setText(QString::number(status.interventions));

  // Rate from the messages' own stamps, so it does not depend on when they arrive here; a
  // restarted learner (fewer updates, or an older stamp) starts the measurement again.
  QString rate = tr("rate: —");
  if (last_learner_ && status.stamp_s > last_learner_->stamp_s &&
    status.updates >= last_learner_->updates)
  {
    const double per_s = static_cast<double>(status.updates - last_learner_->updates) /
      (status.stamp_s - last_learner_->stamp_s);
    rate = tr("%1 /s").arg(per_s, 0, 'f', 1);
  }
  updates_->setText(QStringLiteral("%1 (%2)").arg(status.updates).arg(rate));

  last_learner_ = status;
  learner_seen_ms_ = options_.now_ms();
  renderAdapters();
  refreshStaleness();
}

void OperatorWidget::showCheckpointVerdict(const CheckpointVerdictView & verdict)
{
  verdict_ = verdict;
  renderAdapters();
}

void OperatorWidget::renderAdapters()
{
  const QString learner =
    last_learner_ ? tr(" (learner at v%1)").arg(last_learner_->adapter_version) : QString();
  if (!verdict_) {
    adapters_->setText(tr("no verdict yet") + learner);
    paint(adapters_, QColor());
    checkpoint_detail_->clear();
    return;
  }
  adapters_->setText(
    tr("policy v%1, last checkpoint %2").arg(verdict_->version)
    .arg(verdict_->accepted ? tr("accepted") : tr("REFUSED")) + learner);
  paint(adapters_, verdict_->accepted ? colours::ok : colours::warn);
  checkpoint_detail_->setText(toQt(verdict_->detail));
}

void OperatorWidget::showShieldDecision(const ShieldDecisionView & decision)
{
  shield_action_->setText(
    decision.intervened ?
    tr("%1 -> %2 (intervened)").arg(toQt(decision.proposed_action), toQt(decision.executed_action)) :
    toQt(decision.executed_action));
  paint(shield_action_, decision.intervened ? colours::warn : colours::ok);
  shield_reason_->setText(
    tr("%1   C = %2 vs tau_safe %3")
    .arg(decision.reason.empty() ? tr("ok") : toQt(decision.reason))
    .arg(decision.constraint_value, 0, 'f', 3)
    .arg(decision.constraint_threshold, 0, 'f', 3));
  QStringList failed;
  for (const auto & check : failedChecks(decision)) {
    failed << QStringLiteral("%1 (%2)").arg(toQt(check.name), codeName(check.code));
  }
  shield_failed_->setText(failed.isEmpty() ? tr("none") : failed.join(QStringLiteral(", ")));
}

void OperatorWidget::showHealth(const NodeHealthView & health)
{
  health_[health.name] = HealthEntry{health, options_.now_ms()};
  renderHealth();
}

void OperatorWidget::showCommandResult(const CommandResultView & result)
{
  command_result_->setText(
    QStringLiteral("%1: %2%3").arg(toQt(result.command))
    .arg(result.success ? tr("ok") : tr("FAILED"))
    .arg(result.message.empty() ? QString() : QStringLiteral(" (%1)").arg(toQt(result.message))));
  paint(command_result_, result.success ? colours::ok : colours::error);
}

bool OperatorWidget::isStale(std::int64_t last_seen_ms) const
{
  return options_.now_ms() - last_seen_ms > options_.stale_after_ms;
}

void OperatorWidget::refreshStaleness()
{
  // The learner reports no diagnostics of its own: its status going quiet greys its readouts.
  const bool learner_stale = !last_learner_ || isStale(learner_seen_ms_);
  QString title = tr("Learner");
  if (!last_learner_) {
    title = tr("Learner (no status yet)");
  } else if (learner_stale) {
    title = tr("Learner (stale: no status for %1 s)")
      .arg((options_.now_ms() - learner_seen_ms_) / 1000.0, 0, 'f', 1);
  }
  learner_box_->setTitle(title);
  learner_box_->setEnabled(!learner_stale);
  renderHealth();
}

void OperatorWidget::renderHealth()
{
  health_table_->setRowCount(static_cast<int>(health_.size()));
  const std::int64_t now = options_.now_ms();
  int row = 0;
  for (const auto & [name, entry] : health_) {
    const HealthLevel shown = isStale(entry.seen_ms) ? HealthLevel::Stale : entry.health.level;
    const QStringList cells{
      toQt(name), QString::fromLatin1(levelName(shown)), toQt(entry.health.message),
      QStringLiteral("%1 s").arg((now - entry.seen_ms) / 1000.0, 0, 'f', 1)};
    for (int column = 0; column < cells.size(); ++column) {
      auto * item = new QTableWidgetItem(cells[column]);
      item->setBackground(colourOf(shown));
      item->setForeground(Qt::white);
      item->setToolTip(cells[column]);
      health_table_->setItem(row, column, item);
    }
    ++row;
  }
  health_table_->resizeColumnToContents(0);
}

}  // namespace safari_rviz
