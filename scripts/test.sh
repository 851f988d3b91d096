#!/usr/bin/env bash
# Lint and the whole test suite (unit tests and multi-process ROS 2 tests).
# Arguments go to pytest (e.g. `scripts/test.sh -k visualize -x`).
# Each test module runs in a fresh interpreter: the native runtimes the modules load (PyTorch,
# OpenVINO, ONNX Runtime, NNCF, the ROS 2 client library) stay apart, as in the node, where one
# process loads one of them.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
echo "ruff check ."
ruff check .
status=0
failed=()
for module in test/test_*.py; do
  rc=0
  python -m pytest -q --timeout=900 -p no:cacheprovider "$module" "$@" || rc=$?
  # 5: nothing selected in this module (e.g. -m soak)
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 5 ]; then
    status=1
    failed+=("$module (exit $rc)")
  fi
done
if [ "$status" -ne 0 ]; then
  echo "failed: ${failed[*]}"
fi
exit "$status"
