#include "safari_rviz/operator_panel.hpp"

#include <QMetaObject>
#include <QVBoxLayout>

#include <pluginlib/class_list_macros.hpp>
#include <rviz_common/display_context.hpp>
#include <rviz_common/ros_integration/ros_node_abstraction_iface.hpp>

#include <cstdlib>
#include <utility>

#include "safari_rviz/operator_widget.hpp"
#include "safari_rviz/ros_names.hpp"

namespace safari_rviz
{

namespace
{

// QoS as the nodes publish (safari_ros/nodes/common.py): /safari/mode is latched, so a panel
// opened late still gets the current mode; the rest is reliable.
const rclcpp::QoS kLatchedQos = rclcpp::QoS(1).reliable().transient_local();
const rclcpp::QoS kReliableQos = rclcpp::QoS(10).reliable();

HealthLevel healthLevel(std::uint8_t level)
{
  // An unknown level is shown as an error, never as healthy.
  return level <= static_cast<std::uint8_t>(HealthLevel::Stale) ?
         static_cast<HealthLevel>(level) : HealthLevel::Error;
}

}  // namespace

OperatorPanel::OperatorPanel(QWidget * parent)
: rviz_common::Panel(parent)
{
  widget_ = new OperatorWidget(*this, OperatorWidgetOptions{}, this);
  auto * layout = new QVBoxLayout(this);
  layout->setContentsMargins(0, 0, 0, 0);
  layout->addWidget(widget_);
}

void OperatorPanel::onInitialize()
{
  node_ = getDisplayContext()->getRosNodeAbstraction().lock()->get_raw_node();
  set_mode_ = node_->create_client<safari_msgs::srv::SetMode>(names::kSetMode);
  set_instruction_ = node_->create_client<safari_msgs::srv::SetInstruction>(names::kSetInstruction);
  load_adapters_ = node_->create_client<safari_msgs::srv::LoadAdapters>(names::kLoadAdapters);
  mode_sub_ = node_->create_subscription<std_msgs::msg::String>(
    names::kMode, kLatchedQos, [this](const std_msgs::msg::String & msg) {onMode(msg);});
  learner_sub_ = node_->create_subscription<safari_msgs::msg::LearnerStatus>(
    names::kLearnerStatus, kReliableQos,
    [this](const safari_msgs::msg::LearnerStatus & msg) {onLearnerStatus(msg);});
  decision_sub_ = node_->create_subscription<safari_msgs::msg::ShieldDecision>(
    names::kShieldDecision, kReliableQos,
    [this](const safari_msgs::msg::ShieldDecision & msg) {onShieldDecision(msg);});
  diagnostics_sub_ = node_->create_subscription<diagnostic_msgs::msg::DiagnosticArray>(
    names::kDiagnostics, kReliableQos,
    [this](const diagnostic_msgs::msg::DiagnosticArray & msg) {onDiagnostics(msg);});
}

void OperatorPanel::onGui(std::function<void()> fn)
{
  // Direct when already on the GUI thread; dropped if the widget is gone.
  QMetaObject::invokeMethod(widget_, std::move(fn));
}

template<typename ServiceT>
void OperatorPanel::call(
  const std::shared_ptr<rclcpp::Client<ServiceT>> & client,
  std::shared_ptr<typename ServiceT::Request> request, const std::string & label,
  std::function<void(const typename ServiceT::Response &)> on_reply)
{
  if (!client) {
    widget_->showCommandResult({label, false, "not connected to ROS yet"});
    return;
  }
  // Sent even when the service is not seen yet (an e-stop must never be held back); the
  // operator is told at once, and the reply, if one comes, replaces the message.
  if (!client->service_is_ready()) {
    widget_->showCommandResult(
      {label, false, std::string("service ") + client->get_service_name() + " not available"});
  }
  client->async_send_request(
    request, [this, label, on_reply](typename rclcpp::Client<ServiceT>::SharedFuture future) {
      const auto reply = future.get();
      onGui([this, label, on_reply, reply] {
        widget_->showCommandResult({label, reply->success, reply->message});
        if (on_reply) {
          on_reply(*reply);
        }
      });
    });
}

void OperatorPanel::setMode(Mode mode)
{
  auto request = std::make_shared<safari_msgs::srv::SetMode::Request>();
  request->mode = static_cast<std::uint8_t>(mode);  // Mode holds SetMode's values
  call(set_mode_, request, std::string("set_mode ") + modeName(mode));
}

void OperatorPanel::setInstruction(const std::string & instruction)
{
  auto request = std::make_shared<safari_msgs::srv::SetInstruction::Request>();
  request->instruction = instruction;
  call(set_instruction_, request, "set_instruction");
}

void OperatorPanel::loadAdapters(const std::string & path)
{
  auto request = std::make_shared<safari_msgs::srv::LoadAdapters::Request>();
  request->path = path;
  // The reply is the validation gate's verdict on this checkpoint.
  call<safari_msgs::srv::LoadAdapters>(
    load_adapters_, request, "load_adapters",
    [this](const safari_msgs::srv::LoadAdapters::Response & reply) {
      widget_->showCheckpointVerdict({reply.version, reply.success, reply.message});
    });
}

void OperatorPanel::onMode(const std_msgs::msg::String & mode_msg)
{
  const auto mode = modeFromName(mode_msg.data);
  if (!mode) {
    RCLCPP_WARN(node_->get_logger(), "operator panel: unknown mode '%s'", mode_msg.data.c_str());
    return;
  }
  onGui([this, mode] {widget_->showMode(*mode);});
}

void OperatorPanel::onLearnerStatus(const safari_msgs::msg::LearnerStatus & learner_msg)
{
  LearnerStatusView view;
  view.stamp_s = rclcpp::Time(learner_msg.header.stamp).seconds();
  view.updates = learner_msg.updates;
  view.lagrange_multiplier = learner_msg.lagrange_multiplier;
  view.episode_cost = learner_msg.episode_cost_estimate;
  view.cost_limit = learner_msg.cost_limit;
  view.success_rate = learner_msg.success_rate;
  view.violations = learner_msg.violations;
  view.interventions = learner_msg.interventions;
  view.adapter_version = learner_msg.adapter_version;
  onGui([this, view] {widget_->showLearnerStatus(view);});
}

void OperatorPanel::onShieldDecision(const safari_msgs::msg::ShieldDecision & decision_msg)
{
  ShieldDecisionView view;
  view.proposed_action = decision_msg.proposed_action_name;
  view.executed_action = decision_msg.executed_action_name;
  view.intervened = decision_msg.intervened;
  // Every check of ShieldDecision.msg, under its field name.
  const std::pair<const char *, std::uint8_t> checks[] = {
    {"workspace", decision_msg.workspace}, {"keep_out", decision_msg.keep_out},
    {"ee_speed", decision_msg.ee_speed}, {"joint_limits", decision_msg.joint_limits},
    {"learned", decision_msg.learned}, {"watchdog", decision_msg.watchdog},
    {"input_valid", decision_msg.input_valid}};
  for (const auto & [name, code] : checks) {
    // An unknown code counts as not checked, which fails like a violation.
    view.checks.push_back(
      {name, code <= static_cast<std::uint8_t>(CheckCode::NotChecked) ?
        static_cast<CheckCode>(code) : CheckCode::NotChecked});
  }
  view.reason = decision_msg.reason;
  view.constraint_value = decision_msg.constraint_value;
  view.constraint_threshold = decision_msg.constraint_threshold;
  onGui([this, view] {widget_->showShieldDecision(view);});
}

void OperatorPanel::onDiagnostics(const diagnostic_msgs::msg::DiagnosticArray & diagnostics_msg)
{
  for (const auto & status : diagnostics_msg.status) {
    const NodeHealthView health{status.name, healthLevel(status.level), status.message};
    onGui([this, health] {widget_->showHealth(health);});
    if (status.name != names::kPolicyStatus) {
      continue;
    }
    CheckpointVerdictView verdict{0, status.level == diagnostic_msgs::msg::DiagnosticStatus::OK,
      status.message};
    for (const auto & value : status.values) {
      if (value.key == "adapter_version") {
        verdict.version = static_cast<std::uint32_t>(std::strtoul(value.value.c_str(), nullptr, 10));
      }
    }
    onGui([this, verdict] {widget_->showCheckpointVerdict(verdict);});
  }
}

}  // namespace safari_rviz

PLUGINLIB_EXPORT_CLASS(safari_rviz::OperatorPanel, rviz_common::Panel)
