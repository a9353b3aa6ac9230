#!/usr/bin/env bash
# ASan+UBSan: builds the targets below into build-asan/ (Debug, so asserts are on) and runs their
# tests. Any sanitizer report fails the run: ASan and LSan stop the process, UBSan is built with
# -fno-sanitize-recover; the options reach the server and fake-lms processes the integration
# tests start. Extra args go to ctest. Called by scripts/test.sh (README "Development").
set -euo pipefail
cd "$(dirname "$0")/.."
# Unit tests of the engine, the store, the HTTP executor, validation, the config parser and
# the throttle-header parser, and the integration tests of the API and of a removed endpoint
# (issue 12: a use-after-free at start-up).
targets=(engine_test engine_gates_test circuit_breaker_test retry_budget_test token_bucket_test
  slow_start_test throttle_backoff_test quota_pacer_test sqlite_store_test curl_executor_test
  policy_test throttle_headers_test
  validation_test config_test server_test removed_endpoint_test watch_limits_test)
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DREBOUND_SANITIZE=address,undefined \
  "-DCMAKE_CXX_FLAGS_DEBUG=-g -O1" >/dev/null
cmake --build build-asan -j "$(nproc)" --target "${targets[@]}"
export ASAN_OPTIONS=halt_on_error=1:abort_on_error=1:detect_leaks=1:strict_string_checks=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
cd build-asan
# Only the gtest cases of the targets built above (the others show up as <target>_NOT_BUILT;
# the deploy checks need the Release image; the README tour and the Python client's tests, which
# test Python code that no sanitizer instruments, run on the Release tree). The store tests carry
# their own label.
ctest --output-on-failure --timeout 600 -j 2 -L '^(unit|integration|store)$' \
  -E '(_NOT_BUILT$|^readme\.|^python\.)' "$@"
