#!/usr/bin/env bash
# The demo: starts the real grasp detector node, plays the bundled Cornell frames to it over
# ROS 2 and writes a figure and a JSON file per frame to output/demo/.
# Arguments go to `python -m grasp_fcn_ros.demo` (--help lists them).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
exec python -m grasp_fcn_ros.demo "$@"
