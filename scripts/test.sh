#!/usr/bin/env bash
# Install dependencies, build, and run every test (unit, integration, durability).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
cd build
ctest --output-on-failure --timeout 600 -j 2 "$@"
