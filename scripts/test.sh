#!/usr/bin/env bash
# README's test command: sets up the workspace (idempotent) and runs the test suite.
# Extra arguments go to pytest, e.g. scripts/test.sh -m "not slow" or scripts/test.sh test/core.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh"
# shellcheck disable=SC1091
source "$ROOT/scripts/env.sh"
cd "$ROOT"
# A private DDS domain per run so parallel runs on one machine do not see each other's topics.
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$((RANDOM % 100 + 100))}"
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
exec python -m pytest "$@"
