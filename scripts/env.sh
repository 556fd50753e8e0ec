# Source this file (bash) to use the workspace: the venv, the colcon install space and the
# environment headless MuJoCo rendering needs. scripts/setup.sh must have run once.
_safari_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091
source "$_safari_root/.venv/bin/activate"
# colcon's setup scripts read unset variables; relax nounset while sourcing them.
_safari_nounset=$([[ $- == *u* ]] && echo 1 || true)
set +u
# shellcheck disable=SC1091
source "$_safari_root/install/setup.bash"
[[ -n "$_safari_nounset" ]] && set -u
# The source tree first: edits take effect without a rebuild (setup.sh rebuilds the install space
# whenever sources change, so both hold the same code).
export PYTHONPATH="$_safari_root/src/safari_ros${PYTHONPATH:+:$PYTHONPATH}"
# The console scripts (safari_tabletop, safari_pretrain, safari_evaluate, safari_bringup,
# bag_player, the nodes): colcon installs them where `ros2 run` looks, which install/setup.bash
# does not put on PATH, and there is no `ros2` here to find them.
export PATH="$_safari_root/install/safari_ros/lib/safari_ros:$PATH"
export MUJOCO_GL="${MUJOCO_GL:-egl}" PYOPENGL_PLATFORM="${PYOPENGL_PLATFORM:-egl}"
export RMW_IMPLEMENTATION="${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
export SAFARI_ROOT="$_safari_root"
unset _safari_root _safari_nounset
