// QtTest suite of the ROS-free OperatorWidget (run with QT_QPA_PLATFORM=offscreen). Commands go
// to a recorder; time comes from a clock the tests move, so nothing sleeps.
#include <QGroupBox>
#include <QLabel>
#include <QLineEdit>
#include <QPushButton>
#include <QTableWidget>
#include <QtTest>

#include <memory>
#include <string>
#include <vector>

#include "safari_rviz/operator_widget.hpp"

using safari_rviz::CheckCode;
using safari_rviz::HealthLevel;
using safari_rviz::Mode;
using safari_rviz::OperatorWidget;

namespace
{

// Every command as one line, in order.
struct RecordingCommands : safari_rviz::OperatorCommands
{
  std::vector<std::string> sent;
  void setMode(Mode mode) override {sent.push_back(std::string("set_mode ") + modeName(mode));}
  void setInstruction(const std::string & text) override {sent.push_back("set_instruction " + text);}
  void loadAdapters(const std::string & path) override {sent.push_back("load_adapters " + path);}
};

constexpr std::int64_t kStaleAfterMs = 3000;

struct Fixture
{
  RecordingCommands commands;
  std::int64_t now_ms = 1000;
  std::unique_ptr<OperatorWidget> widget;

  Fixture()
  {
    safari_rviz::OperatorWidgetOptions options;
    options.now_ms = [this] {return now_ms;};
    options.stale_after_ms = kStaleAfterMs;
    widget = std::make_unique<OperatorWidget>(commands, options);
  }
  template<typename T>
  T * find(const char * name) const
  {
    auto * child = widget->findChild<T *>(QString::fromLatin1(name));
    if (!child) {
      qFatal("no child named %s", name);
    }
    return child;
  }
  QString text(const char * label) const {return find<QLabel>(label)->text();}
  void click(const char * button) const {QTest::mouseClick(find<QPushButton>(button), Qt::LeftButton);}
};

const std::vector<Mode> kAllModes{
  Mode::Idle, Mode::Execute, Mode::Learn, Mode::Pause, Mode::EStop, Mode::Home};

bool painted(const QLabel * label, const QColor & colour)
{
  return label->styleSheet().contains(colour.name());
}

safari_rviz::LearnerStatusView learnerStatus(double stamp_s, std::uint64_t updates)
{
  safari_rviz::LearnerStatusView status;
  status.stamp_s = stamp_s;
  status.updates = updates;
  status.lagrange_multiplier = 0.372f;
  status.episode_cost = 18.5f;
  status.cost_limit = 25.f;
  status.success_rate = 0.55f;
  status.violations = 12;
  status.interventions = 47;
  status.adapter_version = 7;
  return status;
}

safari_rviz::ShieldDecisionView interventionDecision()
{
  safari_rviz::ShieldDecisionView decision;
  decision.proposed_action = "move_forward";
  decision.executed_action = "stop";
  decision.intervened = true;
  decision.checks = {{"workspace", CheckCode::Ok}, {"keep_out", CheckCode::Violation},
    {"ee_speed", CheckCode::Ok}, {"joint_limits", CheckCode::Ok}, {"learned", CheckCode::Ok},
    {"watchdog", CheckCode::NotChecked}, {"input_valid", CheckCode::Ok}};
  decision.reason = "keep_out:fragile_vase";
  decision.constraint_value = 0.081f;
  decision.constraint_threshold = 0.3f;
  return decision;
}

QColor rowColour(const QTableWidget * table, int row) {return table->item(row, 0)->background().color();}

}  // namespace

class TestOperatorWidget : public QObject
{
  Q_OBJECT

private slots:
  void modeNamesMatchTheShield()
  {
    for (Mode mode : kAllModes) {
      QCOMPARE(safari_rviz::modeFromName(modeName(mode)), std::optional<Mode>(mode));
    }
    QVERIFY(!safari_rviz::modeFromName("ESTOP").has_value());
    // The values SetMode.srv defines, which the panel sends unchanged.
    QCOMPARE(static_cast<int>(Mode::EStop), 4);
    QCOMPARE(static_cast<int>(Mode::Home), 5);
  }

  void eachModeButtonIssuesExactlyItsCommand_data()
  {
    QTest::addColumn<QString>("button");
    QTest::addColumn<QString>("command");
    for (Mode mode : {Mode::Idle, Mode::Execute, Mode::Learn, Mode::Pause, Mode::Home}) {
      const QString name = QString::fromLatin1(modeName(mode));
      QTest::newRow(modeName(mode)) << ("mode_" + name) << ("set_mode " + name);
    }
    QTest::newRow("estop") << "estop" << "set_mode estop";
  }

  void eachModeButtonIssuesExactlyItsCommand()
  {
    QFETCH(QString, button);
    QFETCH(QString, command);
    Fixture f;
    f.click(button.toLatin1().constData());
    QCOMPARE(f.commands.sent, std::vector<std::string>{command.toStdString()});
  }

  void estopWorksFromEveryMode()
  {
    for (Mode mode : kAllModes) {
      Fixture f;
      f.widget->showMode(mode);
      if (mode != Mode::EStop) {
        f.click((std::string("mode_") + modeName(mode)).c_str());  // the operator's own choice
      }
      f.commands.sent.clear();
      f.click("estop");
      QCOMPARE(f.commands.sent, std::vector<std::string>{"set_mode estop"});
      QVERIFY(f.widget->estopLatched());
      QCOMPARE(f.text("mode"), QStringLiteral("E-STOP"));
      QVERIFY(painted(f.find<QLabel>("mode"), safari_rviz::colours::error));
    }
  }

  void estopIsNotUndoneByAStaleStatus()
  {
    Fixture f;
    f.widget->showMode(Mode::Learn);
    f.click("estop");
    // A mode report published before the shield handled the e-stop arrives after it.
    f.widget->showMode(Mode::Learn);
    QVERIFY(f.widget->estopLatched());
    QCOMPARE(f.text("mode"), QStringLiteral("E-STOP"));
    QVERIFY(f.text("mode_note").contains("learn"));
    f.widget->showMode(Mode::EStop);
    QVERIFY(f.text("mode_note").contains("confirmed"));
    f.widget->showMode(Mode::Execute);  // older still, or another client: still not undone
    QCOMPARE(f.text("mode"), QStringLiteral("E-STOP"));
    QCOMPARE(f.commands.sent, std::vector<std::string>{"set_mode estop"});  // nothing re-sent
    // Only an explicit choice here leaves it.
    f.click("mode_idle");
    QVERIFY(!f.widget->estopLatched());
    f.widget->showMode(Mode::Idle);
    QCOMPARE(f.text("mode"), QStringLiteral("IDLE"));
    QCOMPARE(f.commands.sent, (std::vector<std::string>{"set_mode estop", "set_mode idle"}));
  }

  void instructionAndAdaptersIssueExactlyTheirCommands()
  {
    Fixture f;
    QVERIFY(!f.find<QPushButton>("send_instruction")->isEnabled());  // nothing to send yet
    QVERIFY(!f.find<QPushButton>("load_adapters")->isEnabled());
    QTest::keyClicks(f.find<QLineEdit>("instruction"), "lift the red cube");
    f.click("send_instruction");
    QTest::keyClick(f.find<QLineEdit>("instruction"), Qt::Key_Return);
    f.find<QLineEdit>("adapters_path")->setText("/runs/latest/checkpoints/adapters_v7.safetensors");
    f.click("load_adapters");
    QCOMPARE(f.commands.sent, (std::vector<std::string>{
      "set_instruction lift the red cube", "set_instruction lift the red cube",
      "load_adapters /runs/latest/checkpoints/adapters_v7.safetensors"}));
  }

  void readoutsFollowTheStatus()
  {
    Fixture f;
    f.widget->showLearnerStatus(learnerStatus(100.0, 1000));
    QCOMPARE(f.text("lambda"), QStringLiteral("0.372"));
    QCOMPARE(f.text("episode_cost"), QStringLiteral("18.50 / 25.00"));
    QVERIFY(painted(f.find<QLabel>("episode_cost"), safari_rviz::colours::ok));
    QCOMPARE(f.text("success_rate"), QStringLiteral("55 %"));
    QCOMPARE(f.text("violations"), QStringLiteral("12"));
    QCOMPARE(f.text("interventions"), QStringLiteral("47"));
    QCOMPARE(f.text("updates"), QStringLiteral("1000 (rate: —)"));

    auto over = learnerStatus(102.0, 1100);
    over.episode_cost = 31.f;
    over.violations = 13;
    f.widget->showLearnerStatus(over);
    QCOMPARE(f.text("updates"), QStringLiteral("1100 (50.0 /s)"));
    QVERIFY(f.text("episode_cost").startsWith("31.00 / 25.00"));
    QVERIFY(painted(f.find<QLabel>("episode_cost"), safari_rviz::colours::error));
    QCOMPARE(f.text("violations"), QStringLiteral("13"));
    f.widget->showLearnerStatus(learnerStatus(103.0, 5));  // a restarted learner
    QCOMPARE(f.text("updates"), QStringLiteral("5 (rate: —)"));

    f.widget->showCheckpointVerdict({6, false, "refused /tmp/a.safetensors: sha256 mismatch"});
    QVERIFY(f.text("adapters").contains("policy v6"));
    QVERIFY(f.text("adapters").contains("REFUSED"));
    QVERIFY(f.text("checkpoint_detail").contains("sha256 mismatch"));
    QVERIFY(f.text("adapters").contains("learner at v7"));
    f.widget->showCheckpointVerdict({7, true, "loaded /tmp/b.safetensors (version 7)"});
    QVERIFY(f.text("adapters").contains("accepted"));

    f.widget->showShieldDecision(interventionDecision());
    QCOMPARE(f.text("shield_action"), QStringLiteral("move_forward -> stop (intervened)"));
    QVERIFY(f.text("shield_reason").startsWith("keep_out:fragile_vase"));
    QCOMPARE(f.text("shield_failed"), QStringLiteral("keep_out (violation), watchdog (not checked)"));
    auto passed = interventionDecision();
    passed.intervened = false;
    passed.executed_action = "move_forward";
    passed.reason.clear();
    for (auto & check : passed.checks) {
      check.code = CheckCode::Ok;
    }
    f.widget->showShieldDecision(passed);
    QCOMPARE(f.text("shield_action"), QStringLiteral("move_forward"));
    QCOMPARE(f.text("shield_failed"), QStringLiteral("none"));

    f.widget->showCommandResult({"set_mode estop", false, "service /safari/set_mode not available"});
    QVERIFY(f.text("command_result").contains("FAILED"));
    QVERIFY(painted(f.find<QLabel>("command_result"), safari_rviz::colours::error));
  }

  void staleHealthTurnsGreyAfterItsTimeout()
  {
    Fixture f;
    auto * table = f.find<QTableWidget>("health");
    f.widget->showHealth({"safari/shield", HealthLevel::Ok, "active, mode learn"});
    f.widget->showHealth({"safari/policy", HealthLevel::Error, "refused: NaN"});
    QCOMPARE(table->rowCount(), 2);  // rows by name: policy, shield
    QCOMPARE(rowColour(table, 0), safari_rviz::colours::error);
    QCOMPARE(rowColour(table, 1), safari_rviz::colours::ok);

    f.now_ms += kStaleAfterMs;  // exactly at the timeout: still fresh
    f.widget->refreshStaleness();
    QCOMPARE(rowColour(table, 1), safari_rviz::colours::ok);
    f.now_ms += 1;
    f.widget->showHealth({"safari/policy", HealthLevel::Error, "refused: NaN"});  // policy alive
    f.widget->refreshStaleness();
    QCOMPARE(rowColour(table, 0), safari_rviz::colours::error);
    QCOMPARE(rowColour(table, 1), safari_rviz::colours::stale);
    QCOMPARE(table->item(1, 1)->text(), QStringLiteral("stale"));

    f.widget->showHealth({"safari/shield", HealthLevel::Ok, "active, mode learn"});  // back
    QCOMPARE(rowColour(table, 1), safari_rviz::colours::ok);
    f.widget->showHealth({"safari/shield", HealthLevel::Stale, "reported stale"});
    QCOMPARE(rowColour(table, 1), safari_rviz::colours::stale);

    // The learner has no diagnostics: its readouts grey out when its status stops.
    auto * learner = f.find<QGroupBox>("learner");
    QVERIFY(!learner->isEnabled());  // no status yet
    f.widget->showLearnerStatus(learnerStatus(1.0, 10));
    QVERIFY(learner->isEnabled());
    f.now_ms += kStaleAfterMs + 1;
    f.widget->refreshStaleness();
    QVERIFY(!learner->isEnabled());
    QVERIFY(learner->title().contains("stale"));
  }

  // A realistic state, saved as PNG to $SAFARI_SCREENSHOT (README's picture) or a temporary file.
  void screenshot()
  {
    Fixture f;
    f.widget->resize(600, 860);
    f.click("mode_learn");
    f.widget->showMode(Mode::Learn);
    f.find<QLineEdit>("instruction")->setText("lift the red cube");
    f.find<QLineEdit>("adapters_path")->setText("runs/latest/checkpoints/adapters_v7.safetensors");
    f.widget->showCommandResult({"set_mode learn", true, "mode execute -> learn"});
    f.widget->showLearnerStatus(learnerStatus(100.0, 1790));
    f.widget->showLearnerStatus(learnerStatus(102.0, 1840));
    f.widget->showCheckpointVerdict({7, true, "loaded adapters_v7.safetensors (version 7)"});
    f.widget->showShieldDecision(interventionDecision());
    f.widget->showHealth({"safari/shield", HealthLevel::Ok, "active, mode learn"});
    f.widget->showHealth({"safari/policy", HealthLevel::Ok, "loaded adapters_v7.safetensors"});
    f.widget->showHealth({"camera/color", HealthLevel::Ok, "30.0 Hz"});
    f.now_ms += kStaleAfterMs + 1500;
    f.widget->showHealth({"safari/shield", HealthLevel::Ok, "active, mode learn"});
    f.widget->showHealth({"safari/policy", HealthLevel::Ok, "loaded adapters_v7.safetensors"});
    f.widget->showLearnerStatus(learnerStatus(106.5, 2065));
    f.widget->showHealth({"gripper", HealthLevel::Error, "finger motor over temperature"});
    f.widget->refreshStaleness();  // camera/color has gone quiet: grey

    const QString path = qEnvironmentVariableIsSet("SAFARI_SCREENSHOT") ?
      qEnvironmentVariable("SAFARI_SCREENSHOT") :
      QDir::temp().filePath(QStringLiteral("safari_operator_widget.png"));
    const QPixmap picture = f.widget->grab();
    QVERIFY(!picture.isNull());
    QVERIFY2(picture.save(path, "PNG"), qPrintable("could not write " + path));
    qInfo("screenshot: %s (%dx%d)", qPrintable(path), picture.width(), picture.height());
  }
};

QTEST_MAIN(TestOperatorWidget)
#include "test_operator_widget.moc"
