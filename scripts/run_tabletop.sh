#!/usr/bin/env bash
# README's main command: set up (idempotent), then run the tabletop stack learning online in the
# MuJoCo simulator and write the report. Arguments go to safari_tabletop, e.g.
#   scripts/run_tabletop.sh --episodes 10 device:=cuda
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh"
# shellcheck disable=SC1091
source "$ROOT/scripts/env.sh"
cd "$ROOT"
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
exec python -m safari_ros.tabletop_run "$@"
