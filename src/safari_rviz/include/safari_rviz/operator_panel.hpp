// OperatorPanel: the rviz_common::Panel that binds OperatorWidget to SAFARI's services and topics
// (safari_msgs, /diagnostics) with rclcpp. Built only where rviz_common is installed.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include <diagnostic_msgs/msg/diagnostic_array.hpp>
#include <rclcpp/rclcpp.hpp>
#include <rviz_common/panel.hpp>
#include <safari_msgs/msg/learner_status.hpp>
#include <safari_msgs/msg/shield_decision.hpp>
#include <safari_msgs/srv/load_adapters.hpp>
#include <safari_msgs/srv/set_instruction.hpp>
#include <safari_msgs/srv/set_mode.hpp>
#include <std_msgs/msg/string.hpp>

#include "safari_rviz/operator_interface.hpp"

namespace safari_rviz
{

class OperatorWidget;

class OperatorPanel : public rviz_common::Panel, public OperatorCommands
{
  Q_OBJECT

public:
  explicit OperatorPanel(QWidget * parent = nullptr);
  void onInitialize() override;

  // OperatorCommands: one service call each; the reply is shown in the widget.
  void setMode(Mode mode) override;
  void setInstruction(const std::string & instruction) override;
  void loadAdapters(const std::string & path) override;

private:
  template<typename ServiceT>
  void call(
    const std::shared_ptr<rclcpp::Client<ServiceT>> & client,
    std::shared_ptr<typename ServiceT::Request> request, const std::string & label,
    std::function<void(const typename ServiceT::Response &)> on_reply = {});
  // Runs fn on the widget's (GUI) thread, whichever thread spins the node.
  void onGui(std::function<void()> fn);

  void onMode(const std_msgs::msg::String & mode_msg);
  void onLearnerStatus(const safari_msgs::msg::LearnerStatus & learner_msg);
  void onShieldDecision(const safari_msgs::msg::ShieldDecision & decision_msg);
  void onDiagnostics(const diagnostic_msgs::msg::DiagnosticArray & diagnostics_msg);

  OperatorWidget * widget_ = nullptr;
  rclcpp::Node::SharedPtr node_;
  rclcpp::Client<safari_msgs::srv::SetMode>::SharedPtr set_mode_;
  rclcpp::Client<safari_msgs::srv::SetInstruction>::SharedPtr set_instruction_;
  rclcpp::Client<safari_msgs::srv::LoadAdapters>::SharedPtr load_adapters_;
  rclcpp::Subscription<std_msgs::msg::String>::SharedPtr mode_sub_;
  rclcpp::Subscription<safari_msgs::msg::LearnerStatus>::SharedPtr learner_sub_;
  rclcpp::Subscription<safari_msgs::msg::ShieldDecision>::SharedPtr decision_sub_;
  rclcpp::Subscription<diagnostic_msgs::msg::DiagnosticArray>::SharedPtr diagnostics_sub_;
};

}  // namespace safari_rviz
