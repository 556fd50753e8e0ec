#!/bin/bash
# Source the distribution and the workspace, then run the given command.
set -e
source /opt/ros/kilted/setup.bash
source /ws/install/setup.bash
exec "$@"
