#!/usr/bin/env bash
# Lint and the whole test suite (unit tests and multi-process ROS 2 tests).
# Arguments go to pytest (e.g. `scripts/test.sh -k visualize -x`).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
echo "ruff check ."
ruff check .
python -m pytest -q --timeout=900 test "$@"
