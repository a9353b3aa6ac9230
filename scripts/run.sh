#!/usr/bin/env bash
# Quick start: install dependencies, build, and run rebound-server on its embedded default
# (SQLite file ./rebound.db, config/rebound.yaml, gRPC on 127.0.0.1:50051). Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
exec build/server/rebound-server --config "${REBOUND_CONFIG:-config/rebound.yaml}"
