#!/usr/bin/env bash
# Rebound benchmark scenarios (docs/benchmarks.md).
#
#   bench/run.sh healthy|unary|stream|clients|flaky|waiting|timer|retention|protection|trickle|canvas|all
#
# Each scenario starts its own fake-lms and rebound-server (Release binaries from build-bench)
# in a temporary directory with bench/configs/bench.yaml (SQLite synchronous=full), runs the
# bare-libcurl ceiling against fake-lms, then the scenario, and prints a results table. Every
# process it starts is stopped by its PID, also on errors and Ctrl-C. Needs only bash, coreutils,
# sed and awk (no python, no jq, no curl command).
#
# Knobs (environment):
#   BUILD_DIR            build directory              (default: <repo>/build-bench)
#   HEALTHY_JOBS         healthy scenario jobs        (default 20000)
#   FLAKY_JOBS           flaky scenario jobs          (default 5000)
#   WAITING_JOBS         waiting scenario jobs        (default 1000000)
#   TIMER_HEALTHY_JOBS   healthy load of the timer scenario (default 20000)
#   TIMER_JOBS, TIMER_RATE  the 503,200 stream of the timer scenario (default 3000 jobs, 500/s)
#   CEILING_REQUESTS     curl-ceiling requests        (default 100000)
#   CONCURRENCY          transfers in flight for the ceiling = the endpoints' max_in_flight (256)
#   BATCH, BATCHES_IN_FLIGHT  loadgen's SubmitSyncBatch size and batches in flight (500, 4)
#   UNARY_JOBS, UNARY_IN_FLIGHT  the unary scenario: jobs (20000), SubmitSync calls in flight (64)
#   STREAM_JOBS, STREAMS, STREAM_WINDOW  the stream scenario: jobs (20000), SubmitSyncStreams
#                        (1), jobs per stream sent ahead of their answers (256)
#   RETENTION_JOBS       ended jobs written in bulk for the retention scenario (default 10000000)
#   RETENTION_SUBMITS    healthy jobs run on the empty and the full store (default 20000)
#   RETENTION_DB         an existing filled database to use (and extend) instead of writing one
#   QUICK_CHECK          store.quick_check of every scenario's server (default true)
#   SKIP_CEILING=1       do not run the ceiling
#   KEEP_WORK=1          keep the temporary directory (logs, database)
#   RESULTS_FILE         also append the results tables to this file
#   PROTECTION_JOBS      protection scenario jobs, over 50 endpoints (default 20000)
#   PROTECTION_LIMITS    1: the protection scenario's endpoints carry rate_limit, circuit_breaker,
#                        retry_budget, slow_start (default); 0: the same endpoints without those
#                        keys, for a server that does not know them (the "before" figures)
#   OUTAGE_MS            how long each of the protection scenario's two outages lasts (5000)
#   PROTECTION_MIX       loadgen mix of the protection jobs (protection; healthy: no flaky
#                        endpoints, to separate the cost of 50 endpoints from that of failures)
#   PROTECTION_LATENCY_MS  fake-lms latency of every protection job (20), so that requests are
#                        held at the upstream and its concurrency shows the in-flight caps
#   CANVAS_JOBS, CANVAS_OUTFLOW, CANVAS_COST, CANVAS_LATENCY_MS  the canvas scenario: grade updates
#                        through one token (3000), the bucket's outflow per second (100),
#                        each request's cost (1), the upstream latency (20 ms)
#   TRICKLE_RATES        submit rates (jobs/s) of the trickle scenario's loads (default "500 2000")
#   TRICKLE_JOBS         jobs of each trickle load (default 5000)
#   CLIENT_JOBS          jobs per mode and client of the clients scenario (default 20000)
#   PY_STUBS             the generated Python stubs (default build/client/python/gen)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build-bench}
SERVER_BIN=$BUILD_DIR/server/rebound-server
LMS_BIN=$BUILD_DIR/tools/fake-lms/fake-lms
LOADGEN_BIN=$BUILD_DIR/bench/rebound-loadgen
CEILING_BIN=$BUILD_DIR/bench/curl-ceiling
FILL_BIN=$BUILD_DIR/bench/rebound-store-fill
CONFIG_TEMPLATE=$ROOT/bench/configs/bench.yaml
PROTECTION_TEMPLATE=$ROOT/bench/configs/protection.yaml
CHECK_BIN=$BUILD_DIR/bench/rebound-limits-check

HEALTHY_JOBS=${HEALTHY_JOBS:-20000}
FLAKY_JOBS=${FLAKY_JOBS:-5000}
WAITING_JOBS=${WAITING_JOBS:-1000000}
TIMER_HEALTHY_JOBS=${TIMER_HEALTHY_JOBS:-20000}
TIMER_JOBS=${TIMER_JOBS:-3000}
TIMER_RATE=${TIMER_RATE:-500}
CEILING_REQUESTS=${CEILING_REQUESTS:-100000}
RETENTION_JOBS=${RETENTION_JOBS:-10000000}
RETENTION_SUBMITS=${RETENTION_SUBMITS:-20000}
RETENTION_DB=${RETENTION_DB:-}
QUICK_CHECK=${QUICK_CHECK:-true}
CONCURRENCY=${CONCURRENCY:-256}
BATCH=${BATCH:-500}
BATCHES_IN_FLIGHT=${BATCHES_IN_FLIGHT:-4}
SKIP_CEILING=${SKIP_CEILING:-0}
KEEP_WORK=${KEEP_WORK:-0}
RESULTS_FILE=${RESULTS_FILE:-}
PROTECTION_JOBS=${PROTECTION_JOBS:-20000}
UNARY_JOBS=${UNARY_JOBS:-20000}
UNARY_IN_FLIGHT=${UNARY_IN_FLIGHT:-64}
STREAM_JOBS=${STREAM_JOBS:-20000}
STREAMS=${STREAMS:-1}
STREAM_WINDOW=${STREAM_WINDOW:-256}
TRICKLE_RATES=${TRICKLE_RATES:-500 2000}
TRICKLE_JOBS=${TRICKLE_JOBS:-5000}
CLIENT_JOBS=${CLIENT_JOBS:-20000}
PY_STUBS=${PY_STUBS:-$ROOT/build/client/python/gen}
PROTECTION_LIMITS=${PROTECTION_LIMITS:-1}
OUTAGE_MS=${OUTAGE_MS:-5000}
PROTECTION_LATENCY_MS=${PROTECTION_LATENCY_MS:-20}
PROTECTION_MIX=${PROTECTION_MIX:-protection}
CANVAS_JOBS=${CANVAS_JOBS:-3000}
CANVAS_OUTFLOW=${CANVAS_OUTFLOW:-100}
CANVAS_COST=${CANVAS_COST:-1}
CANVAS_LATENCY_MS=${CANVAS_LATENCY_MS:-20}

PORT_WAIT_S=900  # start-up may include recovering a million jobs
STOP_WAIT_S=120
CLK_TCK=$(getconf CLK_TCK)

usage() {
  echo "usage: $0 healthy|unary|stream|clients|flaky|waiting|timer|retention|protection|trickle|canvas|all" >&2
  exit 2
}
[[ $# -eq 1 ]] || usage
case $1 in healthy | unary | stream | clients | flaky | waiting | timer | retention | protection | trickle | canvas | all) ;; *) usage ;; esac
bins=("$SERVER_BIN" "$LMS_BIN" "$LOADGEN_BIN" "$CEILING_BIN" "$FILL_BIN")
[[ $1 != protection ]] || bins+=("$CHECK_BIN")
for bin in "${bins[@]}"; do
  if [[ ! -x $bin ]]; then
    echo "missing $bin; build it first:" >&2
    echo "  cmake -S $ROOT -B $BUILD_DIR -G Ninja -DCMAKE_BUILD_TYPE=Release -DREBOUND_BUILD_TESTS=OFF" >&2
    echo "  cmake --build $BUILD_DIR --target rebound-server fake-lms rebound-loadgen curl-ceiling rebound-store-fill rebound-limits-check" >&2
    exit 2
  fi
done

WORK=$(mktemp -d /tmp/rebound-bench.XXXXXX)
LMS_PID=
SERVER_PID=
BG_PIDS=()

# Stops one process we started: SIGTERM, a bounded wait, then SIGKILL.
stop_pid() {
  local pid=$1 i
  [[ -n $pid ]] || return 0
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < STOP_WAIT_S * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "run.sh: pid $pid did not stop in ${STOP_WAIT_S}s; SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local pid
  for pid in "${BG_PIDS[@]}"; do stop_pid "$pid"; done
  stop_pid "$SERVER_PID"
  stop_pid "$LMS_PID"
  if [[ $KEEP_WORK == 1 ]]; then
    echo "run.sh: kept $WORK" >&2
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "== $*" >&2; }

# The first value of "key" in a one-line JSON object (numbers, true/false; strings unquoted),
# compact or with a space after the colon (Python's json.dumps).
json_field() {
  grep -o "\"$2\": *[^,}]*" <<<"$1" | head -n 1 | cut -d: -f2- | tr -d '" ' || true
}

# Waits for a port file; prints nothing, fails after PORT_WAIT_S or when the process dies.
wait_port_file() {
  local file=$1 pid=$2 i
  for ((i = 0; i < PORT_WAIT_S * 100; i++)); do
    [[ -s $file ]] && return 0
    kill -0 "$pid" 2>/dev/null || { echo "run.sh: pid $pid exited before writing $file" >&2; return 1; }
    sleep 0.01
  done
  echo "run.sh: no $file after ${PORT_WAIT_S}s" >&2
  return 1
}

# utime + stime of a live process, in clock ticks (fields 14 and 15 of /proc/PID/stat; the
# fields are counted after the command name, which may contain spaces).
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }
# Peak and current resident set, in KiB.
vm_hwm_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }
vm_rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
now_ns() { date +%s%N; }
calc() { awk "BEGIN { printf \"$1\n\", $2 }"; }

# Stops the run when the server died during a scenario (its figures would be meaningless).
require_server_alive() {
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    local rc=0
    wait "$SERVER_PID" || rc=$?
    echo "run.sh: rebound-server (pid $SERVER_PID) exited during the scenario with status $rc" >&2
    tail -n 20 "$SCENARIO_DIR"/server.*.err >&2 || true
    SERVER_PID=
    exit 1
  fi
}

start_lms() {
  local dir=$1
  "$LMS_BIN" --listen 127.0.0.1:0 --port-file "$dir/lms.port" >"$dir/lms.log" 2>&1 &
  LMS_PID=$!
  wait_port_file "$dir/lms.port" "$LMS_PID"
  LMS_PORT=$(<"$dir/lms.port")
  LMS_URL=http://127.0.0.1:$LMS_PORT
}

# Writes the scenario's config (fake-lms port, database in the scenario's directory).
write_config() {
  local dir=$1
  local db=${2:-$dir/rebound.db} quick_check=${3:-$QUICK_CHECK}
  sed -e "s|@LMS_PORT@|$LMS_PORT|g" -e "s|@DB_PATH@|$db|g" -e "s|@QUICK_CHECK@|$quick_check|g" \
    "$CONFIG_TEMPLATE" >"$dir/rebound.yaml"
}

# Starts the server; sets SERVER_PID, TARGET and STARTUP_MS (exec to port file).
start_server() {
  local dir=$1 tag=$2 t0
  rm -f "$dir/server.port"
  t0=$(now_ns)
  "$SERVER_BIN" --config "$dir/rebound.yaml" --port-file "$dir/server.port" \
    >"$dir/server.$tag.log" 2>"$dir/server.$tag.err" &
  SERVER_PID=$!
  wait_port_file "$dir/server.port" "$SERVER_PID" || {
    tail -n 20 "$dir/server.$tag.err" >&2
    return 1
  }
  STARTUP_MS=$(( ($(now_ns) - t0) / 1000000 ))
  TARGET=127.0.0.1:$(<"$dir/server.port")
}

# SIGTERM and wait; sets SHUTDOWN_MS and SERVER_RC.
stop_server() {
  local t0 i
  t0=$(now_ns)
  kill -TERM "$SERVER_PID"
  for ((i = 0; i < STOP_WAIT_S * 100; i++)); do
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.01
  done
  SERVER_RC=0
  if kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "run.sh: server did not stop in ${STOP_WAIT_S}s after SIGTERM; SIGKILL" >&2
    kill -KILL "$SERVER_PID"
  fi
  wait "$SERVER_PID" || SERVER_RC=$?
  SHUTDOWN_MS=$(( ($(now_ns) - t0) / 1000000 ))
  SERVER_PID=
}

run_ceiling() {
  local dir=$1 out
  CEILING_RATE=
  if [[ $SKIP_CEILING == 1 ]]; then
    CEILING_RATE=0
    return 0
  fi
  log "ceiling: $CEILING_REQUESTS POSTs, $CONCURRENCY concurrent, libcurl multi -> fake-lms"
  out=$(timeout 900 "$CEILING_BIN" --url "$LMS_URL" --requests "$CEILING_REQUESTS" \
    --concurrency "$CONCURRENCY" --reset) || { echo "run.sh: curl-ceiling failed: $out" >&2; return 1; }
  echo "$out" >"$dir/ceiling.json"
  echo "ceiling: $out" >&2
  CEILING_RATE=$(json_field "$out" rate)
}

# Starts fake-lms and a fresh server for a scenario (configured by the function named $2,
# default write_config); runs the ceiling.
setup_scenario() {
  SCENARIO_DIR=$WORK/$1
  mkdir -p "$SCENARIO_DIR"
  start_lms "$SCENARIO_DIR"
  "${2:-write_config}" "$SCENARIO_DIR"
  start_server "$SCENARIO_DIR" 1
  log "$1: fake-lms pid $LMS_PID ($LMS_URL), rebound-server pid $SERVER_PID ($TARGET)," \
    "start-up ${STARTUP_MS} ms"
  run_ceiling "$SCENARIO_DIR"
}

teardown_scenario() {
  [[ -z $SERVER_PID ]] || stop_server
  stop_pid "$LMS_PID"
  LMS_PID=
}

# Prints a results table (and appends it to RESULTS_FILE).
emit() {
  local table
  table=$(cat)
  printf '\n%s\n' "$table"
  [[ -z $RESULTS_FILE ]] || printf '\n%s\n' "$table" >>"$RESULTS_FILE"
}

pct_of_ceiling() {
  if [[ -z $CEILING_RATE || $CEILING_RATE == 0 ]]; then echo "n/a"; else calc "%.1f%%" "100 * $1 / $CEILING_RATE"; fi
}
met() { if awk "BEGIN { exit !($1) }"; then echo "met"; else echo "MISSED"; fi; }

# ---------------------------------------------------------------------------------------------

scenario_healthy() {
  local out rc=0 cpu0 cpu1 lcpu0 lcpu1 submit_rate completion_rate cpu_s us_per_job hwm
  setup_scenario healthy
  log "healthy: $HEALTHY_JOBS jobs (script 200), batches of $BATCH, $BATCHES_IN_FLIGHT in flight"
  cpu0=$(cpu_ticks "$SERVER_PID")
  lcpu0=$(cpu_ticks "$LMS_PID")
  out=$(timeout 1800 "$LOADGEN_BIN" --target "$TARGET" --jobs "$HEALTHY_JOBS" --batch "$BATCH" \
    --concurrency "$BATCHES_IN_FLIGHT" --endpoint lms --mix healthy --key-prefix healthy- \
    --lms "$LMS_URL") || rc=$?
  require_server_alive
  cpu1=$(cpu_ticks "$SERVER_PID")
  lcpu1=$(cpu_ticks "$LMS_PID")
  hwm=$(vm_hwm_kib "$SERVER_PID")
  echo "loadgen: $out" >&2
  echo "$out" >"$SCENARIO_DIR/loadgen.json"
  teardown_scenario
  [[ $rc == 0 ]] || echo "run.sh: healthy: loadgen exited $rc" >&2

  submit_rate=$(json_field "$out" submit_rate)
  completion_rate=$(json_field "$out" completion_rate)
  cpu_s=$(calc "%.2f" "($cpu1 - $cpu0) / $CLK_TCK")
  us_per_job=$(calc "%.1f" "($cpu1 - $cpu0) / $CLK_TCK * 1e6 / $HEALTHY_JOBS")
  emit <<EOF
### healthy: $HEALTHY_JOBS jobs, all succeed first try

| figure | value | beside the ceiling ($(calc "%.0f" "${CEILING_RATE:-0}") req/s) | target |
| --- | --- | --- | --- |
| durable submit rate | $(calc "%.0f" "$submit_rate") jobs/s (ack p50 $(json_field "$out" ack_ms_p50 | xargs printf "%.1f") ms, p99 $(json_field "$out" ack_ms_p99 | xargs printf "%.1f") ms per batch of $BATCH) | $(pct_of_ceiling "$submit_rate") | |
| end-to-end completion rate | $(calc "%.0f" "${completion_rate:-0}") jobs/s ($(json_field "$out" complete_seconds | xargs printf "%.2f") s) | $(pct_of_ceiling "${completion_rate:-0}") | >= 20% of ceiling: $(met "${completion_rate:-0} >= 0.2 * ${CEILING_RATE:-0}") |
| server CPU | $cpu_s s total, $(calc "%.3f" "$cpu_s * 1000 / $HEALTHY_JOBS") s per 1,000 jobs = $us_per_job µs/job | | <= 100 µs/job: $(met "$us_per_job <= 100") |
| server peak RSS (VmHWM) | $(calc "%.1f" "$hwm / 1024") MiB | | |
| fake-lms CPU (context) | $(calc "%.2f" "($lcpu1 - $lcpu0) / $CLK_TCK") s | | |
| rejected / upstream effects | $(json_field "$out" rejected) / $(json_field "$out" effects) | | 0 / $HEALTHY_JOBS |
EOF
  [[ $rc == 0 ]] || FAILED=1
}

# The path pipelines take: one job per SubmitSync call (unary) or one job per message of a
# SubmitSyncStream (stream), healthy jobs; the same figures as healthy, plus the client's CPU.
submit_path_scenario() {
  local mode=$1 jobs=$2 what=$3 out rc=0 cpu0 cpu1 submit_rate completion_rate us_per_job
  shift 3
  setup_scenario "$mode"
  log "$mode: $jobs jobs (script 200), $what"
  cpu0=$(cpu_ticks "$SERVER_PID")
  out=$(timeout 1800 "$LOADGEN_BIN" --target "$TARGET" --jobs "$jobs" --mode "$mode" "$@" \
    --endpoint lms --mix healthy --key-prefix "$mode-" --lms "$LMS_URL") || rc=$?
  require_server_alive
  cpu1=$(cpu_ticks "$SERVER_PID")
  echo "loadgen: $out" >&2
  echo "$out" >"$SCENARIO_DIR/loadgen.json"
  teardown_scenario
  [[ $rc == 0 ]] || { echo "run.sh: $mode: loadgen exited $rc" >&2; FAILED=1; }
  submit_rate=$(json_field "$out" submit_rate)
  completion_rate=$(json_field "$out" completion_rate)
  us_per_job=$(calc "%.1f" "($cpu1 - $cpu0) / $CLK_TCK * 1e6 / $jobs")
  emit <<EOF
### $mode: $jobs jobs, $what

| figure | value | beside the ceiling ($(calc "%.0f" "${CEILING_RATE:-0}") req/s) | target |
| --- | --- | --- | --- |
| durable submit rate | $(calc "%.0f" "$submit_rate") jobs/s | $(pct_of_ceiling "$submit_rate") | >= 10,000/s: $(met "$submit_rate >= 10000") |
| ack latency per job | p50 $(json_field "$out" ack_ms_p50 | xargs printf "%.2f") ms, p99 $(json_field "$out" ack_ms_p99 | xargs printf "%.2f") ms | | |
| end-to-end completion rate | $(calc "%.0f" "${completion_rate:-0}") jobs/s | $(pct_of_ceiling "${completion_rate:-0}") | |
| server CPU per job | $us_per_job µs | | <= 100 µs: $(met "$us_per_job <= 100") |
| client (loadgen) CPU per job | $(json_field "$out" client_cpu_us_per_job | xargs printf "%.1f") µs | | |
| rejected / upstream effects | $(json_field "$out" rejected) / $(json_field "$out" effects) | | 0 / $jobs |
EOF
}

scenario_unary() {
  submit_path_scenario unary "$UNARY_JOBS" "one SubmitSync per job, $UNARY_IN_FLIGHT in flight" \
    --concurrency "$UNARY_IN_FLIGHT"
}

scenario_stream() {
  submit_path_scenario stream "$STREAM_JOBS" \
    "one message per job on $STREAMS SubmitSyncStream(s), window $STREAM_WINDOW" \
    --concurrency "$STREAMS" --window "$STREAM_WINDOW"
}

# The pipeline's side of a submit: client CPU per job of the Python client (Debian's grpcio) and
# of a Node.js producer (@grpc/grpc-js from bench/node's package-lock, installed by npm ci), each
# unary (UNARY_IN_FLIGHT calls in flight) and over SubmitSyncStream (STREAM_WINDOW), one after
# the other against one server. Target: stream <= 1/3 of unary.
client_row() {
  local name=$1 out=$2 unary stream
  unary=$(jq -c .unary <<<"$out")
  stream=$(jq -c .stream <<<"$out")
  echo "| $name | $(json_field "$unary" jobs_per_second) / $(json_field "$stream" jobs_per_second) jobs/s" \
    "| $(json_field "$unary" client_cpu_us_per_job) µs | $(json_field "$stream" client_cpu_us_per_job) µs" \
    "| $(json_field "$out" ratio_stream_to_unary) | $(met "$(json_field "$out" ratio_stream_to_unary) <= 0.3334") |"
}

scenario_clients() {
  local py_out node_out rc=0 node_dir=$WORK/node
  mkdir -p "$node_dir"
  cp "$ROOT/bench/node/package.json" "$ROOT/bench/node/package-lock.json" \
    "$ROOT/bench/node/client_cpu.mjs" "$node_dir/"
  log "clients: npm ci (bench/node's lock) into $node_dir"
  if ! (cd "$node_dir" && npm ci --no-audit --no-fund --loglevel=error >npm-ci.log 2>&1); then
    cat "$node_dir/npm-ci.log" >&2
    echo "run.sh: clients: npm ci failed" >&2
    FAILED=1
    return
  fi
  setup_scenario clients
  log "clients: Python client, $CLIENT_JOBS jobs unary then stream"
  py_out=$(timeout 900 /usr/bin/python3 "$ROOT/bench/python_client_cpu.py" --target "$TARGET" \
    --jobs "$CLIENT_JOBS" --in-flight "$UNARY_IN_FLIGHT" --window "$STREAM_WINDOW" \
    --stubs "$PY_STUBS") || rc=$?
  echo "python: $py_out" >&2
  log "clients: Node.js $(node --version), $CLIENT_JOBS jobs unary then stream"
  node_out=$(timeout 900 node "$node_dir/client_cpu.mjs" --target "$TARGET" --jobs "$CLIENT_JOBS" \
    --in-flight "$UNARY_IN_FLIGHT" --window "$STREAM_WINDOW" --proto "$ROOT/proto") || rc=$?
  echo "node: $node_out" >&2
  require_server_alive
  teardown_scenario
  [[ $rc == 0 ]] || { echo "run.sh: clients: a client exited $rc" >&2; FAILED=1; }
  emit <<EOF
### clients: $CLIENT_JOBS jobs per mode, unary ($UNARY_IN_FLIGHT in flight) vs stream (window $STREAM_WINDOW)

| client | unary / stream rate | unary client CPU per job | stream client CPU per job | stream / unary | target <= 1/3 |
| --- | --- | --- | --- | --- | --- |
$(client_row "Python grpcio $(/usr/bin/python3 -c 'import grpc; print(grpc.__version__)')" "$py_out")
$(client_row "Node.js grpc-js $(json_field "$node_out" grpc_js), node $(node --version)" "$node_out")
EOF
}

scenario_flaky() {
  local out rc=0 cpu0 cpu1 cpu_s hwm verified
  setup_scenario flaky
  log "flaky: $FLAKY_JOBS jobs, flaky mix, policy fast (50ms..1s), then --verify"
  cpu0=$(cpu_ticks "$SERVER_PID")
  out=$(timeout 1800 "$LOADGEN_BIN" --target "$TARGET" --jobs "$FLAKY_JOBS" --batch "$BATCH" \
    --concurrency "$BATCHES_IN_FLIGHT" --endpoint lms --mix flaky --key-prefix flaky- \
    --lms "$LMS_URL" --verify) || rc=$?
  require_server_alive
  cpu1=$(cpu_ticks "$SERVER_PID")
  hwm=$(vm_hwm_kib "$SERVER_PID")
  echo "loadgen: $out" >&2
  echo "$out" >"$SCENARIO_DIR/loadgen.json"
  teardown_scenario
  [[ $rc == 0 ]] || echo "run.sh: flaky: loadgen exited $rc (see the verify object above)" >&2

  cpu_s=$(calc "%.2f" "($cpu1 - $cpu0) / $CLK_TCK")
  verified=$(json_field "$out" ok)
  emit <<EOF
### flaky: $FLAKY_JOBS jobs (60% 200, 15% 503,200, 10% 502,503,200, 10% 429:ra=1,200, 5% 400)

| figure | value | target |
| --- | --- | --- |
| completion time | $(json_field "$out" complete_seconds | xargs printf "%.2f") s ($(calc "%.0f" "$(json_field "$out" completion_rate)") jobs/s; ceiling $(calc "%.0f" "${CEILING_RATE:-0}") req/s) | |
| upstream attempts | $(json_field "$out" attempts) (expected $(( FLAKY_JOBS * 12 / 20 + FLAKY_JOBS * 3 / 20 * 2 + FLAKY_JOBS * 2 / 20 * 3 + FLAKY_JOBS * 2 / 20 * 2 + FLAKY_JOBS / 20 ))) | |
| server CPU | $cpu_s s, $(calc "%.1f" "($cpu1 - $cpu0) / $CLK_TCK * 1e6 / $FLAKY_JOBS") µs/job | |
| server peak RSS | $(calc "%.1f" "$hwm / 1024") MiB | |
| jobs by state | $(grep -o '"by_state":{[^}]*}' <<<"$out" | cut -d: -f2- | tr -d '{}"') | SUCCEEDED $(( FLAKY_JOBS - FLAKY_JOBS / 20 )), FAILED $(( FLAKY_JOBS / 20 )) |
| lost (not listed / not terminal) | $(json_field "$out" lost) / $(json_field "$out" not_settled) | 0: $(met "$(json_field "$out" lost)+$(json_field "$out" not_settled) == 0") |
| succeeded keys with exactly one effect | $(json_field "$out" succeeded_with_one_effect) of $(json_field "$out" succeeded_keys); effect mismatches (incl. 400s with an effect) $(json_field "$out" effect_mismatch) | all, 0: $(met "$(json_field "$out" effect_mismatch) == 0") |
| retry before Retry-After (429 keys) | $(json_field "$out" early_retries) of $(json_field "$out" retry_after_keys); smallest gap $(json_field "$out" min_retry_after_gap_ms | xargs printf "%.0f") ms | 0, gap >= 1000 ms: $(met "$(json_field "$out" early_retries) == 0") |
| permanent failure retried (400 keys) | $(json_field "$out" permanent_retried) of $(json_field "$out" permanent_keys) | 0: $(met "$(json_field "$out" permanent_retried) == 0") |
| attempts differing from the script / from Rebound's count | $(json_field "$out" attempts_mismatch) / $(json_field "$out" rebound_attempts_mismatch) | 0 / 0 |
| verify | ${verified:-no result} | true |
EOF
  [[ $rc == 0 ]] || FAILED=1
}

scenario_waiting() {
  local out rc=0 hwm rss_before_stop rss_after count_out db_kib
  setup_scenario waiting
  log "waiting: $WAITING_JOBS jobs answer 503 once and wait 12 h (policy far)"
  out=$(timeout 14400 "$LOADGEN_BIN" --target "$TARGET" --jobs "$WAITING_JOBS" --batch "$BATCH" \
    --concurrency "$BATCHES_IN_FLIGHT" --endpoint lms-far --mix far --key-prefix far- \
    --lms "$LMS_URL" --wait-timeout 10800 --submit-timeout 10800 --poll-ms 500) || rc=$?
  require_server_alive
  hwm=$(vm_hwm_kib "$SERVER_PID")
  rss_before_stop=$(vm_rss_kib "$SERVER_PID")
  echo "loadgen: $out" >&2
  echo "$out" >"$SCENARIO_DIR/loadgen.json"
  stop_server
  local first_shutdown_ms=$SHUTDOWN_MS first_rc=$SERVER_RC
  db_kib=$(du -sk "$SCENARIO_DIR" | awk '{ print $1 }')
  log "waiting: server stopped in ${first_shutdown_ms} ms (exit $first_rc); restarting on the same database"
  start_server "$SCENARIO_DIR" 2
  local recovery_ms=$STARTUP_MS
  rss_after=$(vm_rss_kib "$SERVER_PID")
  log "waiting: recovered in ${recovery_ms} ms; counting jobs by state"
  count_out=$(timeout 1800 "$LOADGEN_BIN" --target "$TARGET" --endpoint lms-far --count) || rc=$?
  echo "count: $count_out" >&2
  require_server_alive
  local rss_after_count hwm_after
  rss_after_count=$(vm_rss_kib "$SERVER_PID")
  hwm_after=$(vm_hwm_kib "$SERVER_PID")
  teardown_scenario

  emit <<EOF
### waiting: $WAITING_JOBS jobs, each failed once (503) and waiting for a retry 12 h ahead

| figure | value | target |
| --- | --- | --- |
| durable submit rate | $(calc "%.0f" "$(json_field "$out" submit_rate)") jobs/s ($(json_field "$out" submit_seconds | xargs printf "%.1f") s; ceiling $(calc "%.0f" "${CEILING_RATE:-0}") req/s) | |
| all first attempts made (no job QUEUED/RUNNING) after | $(json_field "$out" complete_seconds | xargs printf "%.1f") s ($(calc "%.0f" "$(json_field "$out" completion_rate)") jobs/s) | |
| upstream attempts | $(json_field "$out" attempts) | $WAITING_JOBS |
| server peak RSS (VmHWM) with $WAITING_JOBS waiting | $(calc "%.1f" "$hwm / 1024") MiB (VmRSS $(calc "%.1f" "$rss_before_stop / 1024") MiB) | <= 1024 MiB: $(met "$hwm <= 1048576") |
| graceful stop (SIGTERM to exit) | ${first_shutdown_ms} ms (exit $first_rc) | |
| scenario directory (database + WAL + logs) | $(calc "%.0f" "$db_kib / 1024") MiB | |
| start-up recovery (exec to port file) | ${recovery_ms} ms | |
| RSS after recovery / after the count | $(calc "%.1f" "$rss_after / 1024") MiB / $(calc "%.1f" "$rss_after_count / 1024") MiB (peak $(calc "%.1f" "$hwm_after / 1024") MiB) | |
| jobs by state after restart | $(grep -o '"by_state":{[^}]*}' <<<"$count_out" | cut -d: -f2- | tr -d '{}"') (total $(json_field "$count_out" total)) | WAITING_RETRY:$WAITING_JOBS |
EOF
  [[ $rc == 0 ]] || FAILED=1
}

scenario_timer() {
  local healthy_out timer_out rc=0 hrc=0 trc=0 stats hpid= tpid cpu0 cpu1 gaps
  setup_scenario timer
  log "timer: $TIMER_HEALTHY_JOBS healthy jobs + $TIMER_JOBS '503,200' jobs at $TIMER_RATE/s (100 ms fixed backoff)"
  cpu0=$(cpu_ticks "$SERVER_PID")
  echo "{}" >"$SCENARIO_DIR/healthy.json"
  if ((TIMER_HEALTHY_JOBS > 0)); then  # TIMER_HEALTHY_JOBS=0: the stream alone, a baseline
    timeout 1800 "$LOADGEN_BIN" --target "$TARGET" --jobs "$TIMER_HEALTHY_JOBS" --batch "$BATCH" \
      --concurrency "$BATCHES_IN_FLIGHT" --endpoint lms --mix healthy --key-prefix timer-healthy- \
      >"$SCENARIO_DIR/healthy.json" &
    hpid=$!
    BG_PIDS+=("$hpid")
  fi
  timeout 1800 "$LOADGEN_BIN" --target "$TARGET" --jobs "$TIMER_JOBS" --batch 10 --concurrency 4 \
    --rate "$TIMER_RATE" --endpoint lms-timer --policy timer100 --mix retrying \
    --key-prefix timer-stream- --lms "$LMS_URL" --verify >"$SCENARIO_DIR/timer.json" &
  tpid=$!
  BG_PIDS+=("$tpid")
  [[ -z $hpid ]] || wait "$hpid" || hrc=$?
  wait "$tpid" || trc=$?
  BG_PIDS=()
  require_server_alive
  cpu1=$(cpu_ticks "$SERVER_PID")
  healthy_out=$(<"$SCENARIO_DIR/healthy.json")
  timer_out=$(<"$SCENARIO_DIR/timer.json")
  echo "loadgen healthy: $healthy_out" >&2
  echo "loadgen timer stream: $timer_out" >&2
  stop_server
  stats=$(grep '"event":"engine_stats"' "$SCENARIO_DIR/server.1.log" | tail -n 1 || true)
  echo "engine_stats: ${stats:-<missing>}" >&2
  teardown_scenario
  [[ $hrc == 0 && $trc == 0 ]] || { echo "run.sh: timer: loadgen exited $hrc / $trc" >&2; rc=1; }

  # One row per figure the server reports: due -> attempt begun (RUNNING decided: the timer's
  # accuracy), and due -> request on the wire (after the RUNNING commit's fsync).
  lateness_row() {  # name in engine_stats
    local obj count p50 p99 max
    obj=$(grep -o "\"$1\":{[^}]*}" <<<"$stats" || true)
    if [[ -z $obj ]]; then
      echo "not reported by the server | unknown"
      return
    fi
    count=$(json_field "$obj" count)
    p50=$(json_field "$obj" p50)
    p99=$(json_field "$obj" p99)
    max=$(json_field "$obj" max)
    echo "$count timers: p50 $(calc "%.2f" "$p50 / 1000") ms, p99 $(calc "%.2f" "$p99 / 1000") ms, max $(calc "%.2f" "$max / 1000") ms | p99 <= 5 ms: $(met "$p99 <= 5000")"
  }
  local lateness_begun lateness_wire
  lateness_begun=$(lateness_row timer_lateness_us)
  lateness_wire=$(lateness_row start_lateness_us)
  local healthy_row="none (TIMER_HEALTHY_JOBS=0: the stream alone, a baseline)"
  if ((TIMER_HEALTHY_JOBS > 0)); then
    healthy_row="$TIMER_HEALTHY_JOBS jobs, $(calc "%.0f" "$(json_field "$healthy_out" completion_rate)") jobs/s end to end ($(json_field "$healthy_out" complete_seconds | xargs printf "%.2f") s; ceiling $(calc "%.0f" "${CEILING_RATE:-0}") req/s)"
  fi
  gaps=$(grep -o '"first_retry_gap_ms":{[^}]*}' <<<"$timer_out" || true)
  emit <<EOF
### timer: healthy load + a stream of 503,200 jobs with a fixed 100 ms backoff

| figure | value | target |
| --- | --- | --- |
| healthy load | $healthy_row | |
| timer stream | $TIMER_JOBS jobs at $TIMER_RATE/s, done after $(json_field "$timer_out" complete_seconds | xargs printf "%.2f") s; fake-lms attempts, both loads: $(json_field "$timer_out" attempts) (expected $(( TIMER_HEALTHY_JOBS + TIMER_JOBS * 2 ))) | |
| server CPU | $(calc "%.2f" "($cpu1 - $cpu0) / $CLK_TCK") s for $(( TIMER_HEALTHY_JOBS + TIMER_JOBS )) jobs | |
| timer lateness: due time -> attempt begun (RUNNING decided; the engine's timer accuracy) | $lateness_begun |
| due time -> request on the wire (after the RUNNING transition is durable: includes the group commit's fsync) | $lateness_wire |
| retry delay seen by fake-lms (attempt 2 arrival - attempt 1 arrival; nominal 100 ms) | $(json_field "$gaps" count) keys: p50 $(json_field "$gaps" p50 | xargs printf "%.1f") ms, p99 $(json_field "$gaps" p99 | xargs printf "%.1f") ms, max $(json_field "$gaps" max | xargs printf "%.1f") ms | |
| timer stream verify (every job SUCCEEDED, 2 attempts, 1 effect) | $(json_field "$timer_out" ok) | true |
EOF
  [[ $rc == 0 ]] || FAILED=1
}

# Starts the server on DIR (start number N), runs the healthy load under TAG and stops it: sets
# RET_START, RET_SUBMIT, RET_COMPLETE, RET_ACK99. WHAT names the store in the log line.
retention_load() {
  local dir=$1 n=$2 tag=$3 what=$4 out rc=0
  start_server "$dir" "$n"
  RET_START=$STARTUP_MS
  log "retention: $what, start-up ${RET_START} ms; $RETENTION_SUBMITS healthy jobs"
  out=$(timeout 1800 "$LOADGEN_BIN" --target "$TARGET" --jobs "$RETENTION_SUBMITS" --batch "$BATCH" \
    --concurrency "$BATCHES_IN_FLIGHT" --endpoint lms --mix healthy --key-prefix "retention-$tag-$(now_ns)-" \
    --lms "$LMS_URL") || rc=$?
  require_server_alive
  echo "loadgen $tag: $out" >&2
  [[ $rc == 0 ]] || { echo "run.sh: retention: loadgen exited $rc" >&2; FAILED=1; }
  RET_SUBMIT=$(json_field "$out" submit_rate)
  RET_COMPLETE=$(json_field "$out" completion_rate)
  RET_ACK99=$(json_field "$out" ack_ms_p99)
  stop_server
}

# An empty store against RETENTION_JOBS ended jobs: start-up, submit and completion rates.
scenario_retention() {
  local empty_dir=$WORK/retention-empty full_dir=$WORK/retention-full db fill_out
  local e_start e_submit e_complete e_ack f_start f_start_qc f_submit f_complete f_ack db_mib
  SCENARIO_DIR=$empty_dir
  mkdir -p "$empty_dir" "$full_dir"
  start_lms "$empty_dir"
  run_ceiling "$empty_dir"
  write_config "$empty_dir" "$empty_dir/rebound.db" false
  start_server "$empty_dir" 1
  stop_server
  retention_load "$empty_dir" 2 empty "empty store"
  e_start=$RET_START e_submit=$RET_SUBMIT e_complete=$RET_COMPLETE e_ack=$RET_ACK99

  SCENARIO_DIR=$full_dir
  db=${RETENTION_DB:-$full_dir/rebound.db}
  if [[ -z $RETENTION_DB ]]; then
    log "retention: writing $RETENTION_JOBS ended jobs in bulk (bench fixture, straight SQLite)"
    fill_out=$(timeout 3600 "$FILL_BIN" fill --db "$db" --jobs "$RETENTION_JOBS" 2>/dev/null)
    echo "fill: $fill_out" >&2
    sync "$db"  # the fixture was written without fsync: its writeback is not the server's cost
  fi
  db_mib=$(du -sm "$db" | awk '{ print $1 }')
  write_config "$full_dir" "$db" false
  retention_load "$full_dir" 1 full "$db_mib MiB store"
  f_start=$RET_START f_submit=$RET_SUBMIT f_complete=$RET_COMPLETE f_ack=$RET_ACK99
  write_config "$full_dir" "$db" true
  start_server "$full_dir" 2
  f_start_qc=$STARTUP_MS
  stop_server
  stop_pid "$LMS_PID"
  LMS_PID=

  emit <<EOF
### retention: an empty store against one holding $RETENTION_JOBS ended jobs ($db_mib MiB)

| figure | empty store | full store | full / empty | target |
| --- | --- | --- | --- | --- |
| durable submit rate | $(calc "%.0f" "$e_submit") jobs/s (ack p99 $(calc "%.1f" "$e_ack") ms) | $(calc "%.0f" "$f_submit") jobs/s (ack p99 $(calc "%.1f" "$f_ack") ms) | $(calc "%.3f" "$f_submit / $e_submit") | >= 0.9: $(met "$f_submit >= 0.9 * $e_submit") |
| end-to-end completion rate | $(calc "%.0f" "$e_complete") jobs/s | $(calc "%.0f" "$f_complete") jobs/s | $(calc "%.3f" "$f_complete / $e_complete") | >= 0.9: $(met "$f_complete >= 0.9 * $e_complete") |
| start-up recovery, quick_check off (exec to port file) | ${e_start} ms | ${f_start} ms | | within 10% or 100 ms: $(met "$f_start <= 1.1 * $e_start || $f_start <= $e_start + 100") |
| start-up with store.quick_check (the default) | | ${f_start_qc} ms | | |
EOF
}

# ---------------------------------------------------------------------------------------------
# protection: 50 endpoints with mixed limits and failures, beside the healthy load.

PROTECTION_OUTAGES=(48 49)  # e48: 503 from the start; e49: 502 from 2 s on; each OUTAGE_MS

# Prints the 50 endpoints e0 .. e49; $1 = 1: with the endpoint protection keys. Deterministic by
# number: max_in_flight 4/8/16/32/64 (e % 5); a token bucket on every third endpoint (40/s burst
# 4, 80/s burst 8, 160/s burst 16); a retry budget on e % 4 == 1, slow start (2 s) on
# e % 4 == 3, an explicit breaker on e % 7 == 0 and on the outage endpoints (the others keep the
# defaults of config.h). The flaky endpoints (e % 5 == 2) are the mix's (bench/mix.h).
protection_endpoints() {
  local with=$1 e k rates=(40 80 160) bursts=(4 8 16) mifs=(4 8 16 32 64) policy
  for ((e = 0; e < 50; e++)); do
    policy=fast
    for k in "${PROTECTION_OUTAGES[@]}"; do ((e != k)) || policy=patient; done
    cat <<EOF
  - name: e$e
    base_url: http://127.0.0.1:$LMS_PORT/e$e
    allowed_path_prefixes: [/api/v1/]
    max_in_flight: ${mifs[e % 5]}
    policy: $policy
EOF
    [[ $with == 1 ]] || continue
    if ((e % 3 == 0)); then
      echo "    rate_limit: {rate: ${rates[(e / 3) % 3]}, burst: ${bursts[(e / 3) % 3]}}"
    fi
    if ((e % 7 == 0)) || [[ $policy == patient ]]; then
      echo "    circuit_breaker: {enabled: true, failure_ratio: 0.5, min_requests: 10, window: 5s," \
        "open_duration: 500ms, max_open_duration: 4s, half_open_probes: 2, count_throttles: false}"
    fi
    ((e % 4 != 1)) || echo "    retry_budget: {enabled: true, ratio: 0.2, min_retries: 3}"
    ((e % 4 != 3)) || echo "    slow_start: {window: 2s}"
  done
}

# The server's config (with the protection keys when PROTECTION_LIMITS=1) and limits.yaml, the
# same endpoints always with them, for the checker.
write_protection_config() {
  local dir=$1
  sed -e "s|@LMS_PORT@|$LMS_PORT|g" -e "s|@DB_PATH@|$dir/rebound.db|g" \
    -e "s|@QUICK_CHECK@|$QUICK_CHECK|g" "$PROTECTION_TEMPLATE" >"$dir/rebound.yaml"
  cp "$dir/rebound.yaml" "$dir/limits.yaml"
  protection_endpoints "$PROTECTION_LIMITS" >>"$dir/rebound.yaml"
  protection_endpoints 1 >>"$dir/limits.yaml"
}

# One load on the running server (loadgen flags after the tag): sets LOAD_OUT (loadgen's JSON)
# and LOAD_CPU (server CPU seconds during it).
measured_load() {
  local tag=$1 out rc=0 cpu0 cpu1
  shift
  cpu0=$(cpu_ticks "$SERVER_PID")
  out=$(timeout 1800 "$LOADGEN_BIN" --target "$TARGET" --batch "$BATCH" \
    --concurrency "$BATCHES_IN_FLIGHT" --lms "$LMS_URL" "$@") || rc=$?
  require_server_alive
  cpu1=$(cpu_ticks "$SERVER_PID")
  echo "loadgen $tag: $out" >&2
  echo "$out" >"$SCENARIO_DIR/loadgen.$tag.json"
  [[ $rc == 0 ]] || { echo "run.sh: protection: loadgen ($tag) exited $rc" >&2; FAILED=1; }
  LOAD_OUT=$out
  LOAD_CPU=$(calc "%.3f" "($cpu1 - $cpu0) / $CLK_TCK")
}

# The healthy load (lms), the protection load (e0 .. e49, two outages started with it), the
# healthy load again, all on one server; then the limits check and the jobs by state.
scenario_protection() {
  local h1_out h1_cpu p_out p_cpu h2_out h2_cpu check_out check_rc=0 count_out posts
  local h_rate p_rate ratio p_attempts p_outage expected_failed rate_verdict in_flight_verdict
  if [[ $PROTECTION_LIMITS == 1 ]]; then
    log "protection: the config carries the endpoint protection keys; a server without" \
      "endpoint protection refuses them: run it with PROTECTION_LIMITS=0"
  fi
  setup_scenario protection write_protection_config
  log "protection: healthy $HEALTHY_JOBS jobs on lms, then $PROTECTION_JOBS jobs over e0..e49" \
    "(limits in the server's config: $PROTECTION_LIMITS), then healthy again"
  measured_load healthy1 --jobs "$HEALTHY_JOBS" --endpoint lms --mix healthy --key-prefix healthy1-
  h1_out=$LOAD_OUT h1_cpu=$LOAD_CPU
  posts=(--lms-post "/__outage?ms=$OUTAGE_MS&status=503&prefix=/e${PROTECTION_OUTAGES[0]}/"
    --lms-post "/__outage?ms=$OUTAGE_MS&after_ms=2000&status=502&prefix=/e${PROTECTION_OUTAGES[1]}/")
  measured_load protection --jobs "$PROTECTION_JOBS" --endpoint e --endpoints 50 \
    --mix "$PROTECTION_MIX" --key-prefix protection- --latency-ms "$PROTECTION_LATENCY_MS" "${posts[@]}"
  p_out=$LOAD_OUT p_cpu=$LOAD_CPU
  measured_load healthy2 --jobs "$HEALTHY_JOBS" --endpoint lms --mix healthy --key-prefix healthy2-
  h2_out=$LOAD_OUT h2_cpu=$LOAD_CPU
  check_out=$(timeout 600 "$CHECK_BIN" --config "$SCENARIO_DIR/limits.yaml") || check_rc=$?
  echo "$check_out" >"$SCENARIO_DIR/limits_check.json"
  echo "limits check: $(cut -c1-400 <<<"$check_out") ..." >&2
  ((check_rc <= 1)) || { echo "run.sh: protection: the limits check failed ($check_rc)" >&2; FAILED=1; }
  count_out=$(timeout 600 "$LOADGEN_BIN" --target "$TARGET" --endpoint e --endpoints 50 --count) || FAILED=1
  echo "count: $count_out" >&2
  teardown_scenario

  h_rate=$(calc "%.0f" "2 * $HEALTHY_JOBS / ($h1_cpu + $h2_cpu)")
  p_rate=$(calc "%.0f" "$PROTECTION_JOBS / $p_cpu")
  ratio=$(calc "%.3f" "$p_rate / $h_rate")
  p_attempts=$(($(json_field "$p_out" attempts) - $(json_field "$h1_out" attempts)))
  p_outage=$(($(json_field "$p_out" outage_answers) - $(json_field "$h1_out" outage_answers)))
  # The flaky endpoints' 400s (bench/mix.h): job i with (i % 50) % 5 == 2 and (i / 50) % 20 == 19.
  expected_failed=0
  [[ $PROTECTION_MIX != protection ]] || expected_failed=$(awk -v n="$PROTECTION_JOBS" 'BEGIN { f = 0; for (i = 0; i < n; i++) if ((i % 50) % 5 == 2 && int(i / 50) % 20 == 19) f++; print f }')
  outage_row() {  # endpoint number
    local obj
    obj=$(grep -o "\"e$1\":{[^}]*}" <<<"$check_out" || true)
    echo "e$1: $(json_field "$obj" requests) requests, $(json_field "$obj" outage_answers) answered by its outage"
  }
  if [[ $PROTECTION_LIMITS == 1 ]]; then
    rate_verdict="0: $(met "$(json_field "$check_out" rate_exceeded_count) == 0")"
    [[ $(json_field "$check_out" rate_exceeded_count) == 0 ]] || FAILED=1
  else
    rate_verdict="not configured (PROTECTION_LIMITS=0): the before figure"
  fi
  in_flight_verdict="0: $(met "$(json_field "$check_out" in_flight_exceeded_count) == 0")"
  [[ $(json_field "$check_out" in_flight_exceeded_count) == 0 ]] || FAILED=1
  emit <<EOF
### protection: $PROTECTION_JOBS jobs over 50 endpoints, mixed limits and failures (PROTECTION_LIMITS=$PROTECTION_LIMITS, mix $PROTECTION_MIX, outages ${OUTAGE_MS} ms)

| figure | value | target |
| --- | --- | --- |
| healthy on the same server, before / after | $HEALTHY_JOBS jobs each in $h1_cpu / $h2_cpu CPU-s = $(calc "%.0f" "$HEALTHY_JOBS / $h1_cpu") / $(calc "%.0f" "$HEALTHY_JOBS / $h2_cpu") jobs per CPU-s (mean $h_rate) | |
| protection load | $PROTECTION_JOBS jobs (upstream latency $PROTECTION_LATENCY_MS ms), $p_attempts upstream attempts, done after $(json_field "$p_out" complete_seconds | xargs printf "%.2f") s; $p_cpu CPU-s | |
| protection, jobs per CPU-second | **$p_rate** = $ratio of healthy ($(calc "%.0f" "$p_attempts / $p_cpu") attempts per CPU-s) | >= 0.85 of healthy: $(met "$ratio >= 0.85") |
| answered by the outages (${OUTAGE_MS} ms each) | $p_outage requests; $(outage_row "${PROTECTION_OUTAGES[0]}"); $(outage_row "${PROTECTION_OUTAGES[1]}") | |
| token-bucket endpoints over burst + rate x 1 s in some 1 s window | $(json_field "$check_out" rate_exceeded_count) of $(json_field "$check_out" rate_limited_endpoints) (closest to its limit: $(json_field "$check_out" worst_rate_endpoint), $(calc "%.3f" "$(json_field "$check_out" worst_rate_ratio)") x allowed) | $rate_verdict |
| endpoints over max_in_flight (concurrency seen by fake-lms) | $(json_field "$check_out" in_flight_exceeded_count) of $(json_field "$check_out" endpoints) | $in_flight_verdict |
| jobs by state (all three loads) | $(grep -o '"by_state":{[^}]*}' <<<"$count_out" | cut -d: -f2- | tr -d '{}"') | FAILED:$expected_failed (the flaky endpoints' 400s) |
EOF
}

# Bytes the process has written through system calls (/proc/PID/io wchar): WAL frames,
# checkpoints, and a little socket traffic.
written_bytes() { awk '/^wchar:/ { print $2 }' "/proc/$1/io"; }

# What a job costs when jobs arrive spread over time, one per SubmitSyncBatch, 64 in flight (a
# pipeline forwarding each change as it happens), beside the same jobs submitted as fast as they
# are acknowledged: every commit then carries one or two rows, so its fixed part (pages written
# whole to the WAL and again at the checkpoint, the fsync) is paid per job.
scenario_trickle() {
  local rate out cpu0 cpu1 w0 w1 rows="" tag
  setup_scenario trickle
  for rate in 0 $TRICKLE_RATES; do
    tag=$([[ $rate == 0 ]] && echo "as fast as acknowledged" || echo "$rate jobs/s")
    log "trickle: $TRICKLE_JOBS jobs, one per call, 64 in flight, $tag"
    cpu0=$(cpu_ticks "$SERVER_PID")
    w0=$(written_bytes "$SERVER_PID")
    out=$(timeout 1800 "$LOADGEN_BIN" --target "$TARGET" --jobs "$TRICKLE_JOBS" --batch 1 \
      --concurrency 64 --rate "$rate" --endpoint lms --mix healthy --key-prefix "trickle-$rate-" \
      --lms "$LMS_URL") || { echo "run.sh: trickle: loadgen ($tag) failed" >&2; FAILED=1; }
    require_server_alive
    cpu1=$(cpu_ticks "$SERVER_PID")
    w1=$(written_bytes "$SERVER_PID")
    echo "loadgen ($tag): $out" >&2
    rows+="| $tag | $(json_field "$out" complete_seconds | xargs printf "%.2f") s | $(calc "%.1f" "($cpu1 - $cpu0) / $CLK_TCK * 1e6 / $TRICKLE_JOBS") µs | $(( (w1 - w0) / TRICKLE_JOBS )) |"$'\n'
  done
  teardown_scenario
  emit <<EOF
### trickle: $TRICKLE_JOBS jobs per load, one per SubmitSyncBatch, 64 in flight

| submit rate | done after | server CPU per job | bytes written per job |
| --- | --- | --- | --- |
${rows%$'\n'}
EOF
}

# Grade updates through one Canvas access token, as a pipeline sends them (one job per call, 64
# in flight), against fake-lms's Canvas throttle (tools/fake-lms/canvas.h: Canvas's leaky bucket,
# high-water mark 600, maximum 800, up-front cost 50; the outflow time-scaled from Canvas's 10/s
# to CANVAS_OUTFLOW so a run takes seconds, not minutes). The bucket's own bound: what the jobs
# cost beyond the high-water mark, leaked at the outflow. The endpoint carries Rebound's defaults
# (max_in_flight 64, pacing on) and the canvas policy (the 403 rule, 5 attempts).
scenario_canvas() {
  local out count_out rc=0 attempts throttled secs bound dead share ratio canvas exhausted failed
  setup_scenario canvas
  canvas="/__canvas?high_water=600&maximum=800&up_front=50&cost=$CANVAS_COST&outflow=$CANVAS_OUTFLOW"
  log "canvas: $CANVAS_JOBS jobs, one per call, 64 in flight, through one token (outflow" \
    "$CANVAS_OUTFLOW/s, cost $CANVAS_COST, latency $CANVAS_LATENCY_MS ms)"
  out=$(timeout 1800 "$LOADGEN_BIN" --target "$TARGET" --jobs "$CANVAS_JOBS" --batch 1 \
    --concurrency 64 --endpoint canvas --mix healthy --key-prefix canvas- \
    --latency-ms "$CANVAS_LATENCY_MS" --lms "$LMS_URL" --lms-post "$canvas") || rc=$?
  require_server_alive
  count_out=$(timeout 600 "$LOADGEN_BIN" --target "$TARGET" --endpoint canvas --count) || rc=$?
  echo "loadgen: $out" >&2
  echo "count: $count_out" >&2
  echo "$out" >"$SCENARIO_DIR/loadgen.json"
  teardown_scenario
  [[ $rc == 0 ]] || { echo "run.sh: canvas: loadgen exited $rc" >&2; FAILED=1; }

  attempts=$(json_field "$out" attempts)
  throttled=$(json_field "$out" throttle_answers)
  secs=$(json_field "$out" complete_seconds)
  bound=$(calc "%.2f" "($CANVAS_JOBS * $CANVAS_COST - 600) / $CANVAS_OUTFLOW")
  exhausted=$(json_field "$count_out" EXHAUSTED)
  failed=$(json_field "$count_out" FAILED)
  dead=$((${exhausted:-0} + ${failed:-0}))
  share=$(calc "%.2f" "100 * ${throttled:-0} / ${attempts:-1}")
  ratio=$(calc "%.2f" "${secs:-0} / $bound")
  if ! awk "BEGIN { exit !($share <= 5 && $ratio <= 1.5) }" || [[ $dead != 0 ]]; then FAILED=1; fi
  emit <<EOF
### canvas: $CANVAS_JOBS grade updates through one token, one per call, 64 in flight

| figure | value | target |
| --- | --- | --- |
| requests sent / throttled (403) | ${attempts:-?} / ${throttled:-?} = $share% | <= 5%: $(met "$share <= 5") |
| jobs by state | $(grep -o '"by_state":{[^}]*}' <<<"$count_out" | cut -d: -f2- | tr -d '{}"') | 0 dead letters: $(met "$dead == 0") |
| done after | $(printf "%.2f" "${secs:-0}") s; the bucket's bound ($CANVAS_JOBS x $CANVAS_COST - 600) / $CANVAS_OUTFLOW = $bound s | <= 1.5 x bound: $(met "$ratio <= 1.5") ($ratio x) |
EOF
}

# ---------------------------------------------------------------------------------------------

{
  echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'),"\
    "$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo); load $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "build: $BUILD_DIR ($(grep -m1 '^CMAKE_BUILD_TYPE' "$BUILD_DIR/CMakeCache.txt" 2>/dev/null | cut -d= -f2)); work dir $WORK"
} >&2

# Scenario functions run plainly (not in an || list), so set -e still stops the run on a broken
# set-up; a scenario whose checks fail sets FAILED and the next scenario still runs.
FAILED=0
scenarios=("$1")
[[ $1 != all ]] || scenarios=(healthy flaky timer waiting)
for s in "${scenarios[@]}"; do
  "scenario_$s"
done
exit "$FAILED"
