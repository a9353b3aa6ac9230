#!/usr/bin/env bash
# Install dependencies, build, and run every test (unit, integration, durability), then a subset
# under ASan+UBSan (scripts/test-sanitizers.sh; REBOUND_SANITIZERS=0 skips it).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
(cd build && ctest --output-on-failure --timeout 600 -j 2 "$@")
if [[ "${REBOUND_SANITIZERS:-1}" != 0 ]]; then
  scripts/test-sanitizers.sh
fi
