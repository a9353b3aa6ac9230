#!/usr/bin/env bash
# The demo: rebound-server + fake-lms + a few hundred grade syncs with mixed failures, ending
# with a summary of attempts, retries, Retry-After waits and final states.
#
#   scripts/demo.sh [JOBS]        (default 300; builds first if needed)
#
# Everything runs on 127.0.0.1 on free ports, in a temporary directory, and is stopped by PID
# when the script ends.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
JOBS=${1:-300}
BUILD=${BUILD:-build}
if [ ! -x "$BUILD/server/rebound-server" ] || [ ! -x "$BUILD/client/reboundctl" ] ||
   [ ! -x "$BUILD/tools/fake-lms/fake-lms" ]; then
  scripts/install-deps.sh
  scripts/build.sh
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/rebound-demo-XXXXXX")
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

wait_for_file() {  # path, seconds
  for _ in $(seq 1 $(( $2 * 20 ))); do [ -s "$1" ] && return 0; sleep 0.05; done
  echo "demo: $1 did not appear" >&2; return 1
}

"$BUILD/tools/fake-lms/fake-lms" --listen 127.0.0.1:0 --port-file "$WORK/lms.port" \
  >"$WORK/fake-lms.log" 2>&1 &
PIDS+=($!)
wait_for_file "$WORK/lms.port" 10
LMS_PORT=$(cat "$WORK/lms.port")

# The sample config, pointed at this fake-lms, on a free gRPC port, with a short attempt
# timeout so the hanging upstream shows up within the demo.
sed -e "s#http://127.0.0.1:8080#http://127.0.0.1:${LMS_PORT}#" \
    -e "s#grpc_listen: 127.0.0.1:50051#grpc_listen: 127.0.0.1:0#" \
    -e "s#metrics_listen: 127.0.0.1:9464#metrics_listen: 127.0.0.1:0#" \
    -e "s#^    timeout: 30s#    timeout: 1s#" \
    -e "s#^  path: rebound.db#  path: $WORK/rebound.db#" \
    config/rebound.yaml >"$WORK/rebound.yaml"
"$BUILD/server/rebound-server" --config "$WORK/rebound.yaml" --port-file "$WORK/grpc.port" \
  --metrics-port-file "$WORK/metrics.port" >"$WORK/server.log" 2>&1 &
PIDS+=($!)
wait_for_file "$WORK/grpc.port" 30
CTL=("$ROOT/$BUILD/client/reboundctl" --target "127.0.0.1:$(cat "$WORK/grpc.port")")

# A mix of what a campus LMS does on a bad day, as fake-lms scripts.
mix=(
  "200" "200" "200" "200" "200" "200" "200" "200" "200" "200"
  "503,503,200"                                    # flaky gateway
  "502,200"
  "403:body=Rate%20Limit%20Exceeded,200"           # Canvas throttling: no Retry-After (rule canvas-throttle)
  "429:ra=2,200"                                   # plain 429 with Retry-After
  "400"                                            # bad grade payload: permanent
  "404"                                            # unknown course: permanent
  "hang,200"                                       # upstream hangs: timeout, then retry
  "500"                                            # keeps failing: EXHAUSTED after 5
  "reset,200"                                      # connection dropped
  "200:ms=300"                                     # slow but fine
)
for i in $(seq 1 "$JOBS"); do
  script=${mix[$(( i % ${#mix[@]} ))]}
  printf '{"idempotencyKey":"demo-%d","endpoint":"canvas","method":"PUT","path":"/api/v1/courses/%d/assignments/3/submissions/%d","query":"script=%s","body":"eyJwb3N0ZWRfZ3JhZGUiOiJBIn0=","labels":{"pipeline":"gradebook"}}\n' \
    "$i" $(( i % 7 )) "$i" "$script"
done >"$WORK/jobs.jsonl"

echo "== submitting $JOBS grade syncs in batches of 100"
"${CTL[@]}" submit --file "$WORK/jobs.jsonl" --window 100

echo "== waiting for every job to finish"
for _ in $(seq 1 600); do
  open=$("${CTL[@]}" --json list --state QUEUED --state BLOCKED --state RUNNING \
         --state WAITING_RETRY --all | wc -l)
  [ "$open" -eq 0 ] && break
  printf '\r   %4d jobs still open' "$open"
  sleep 0.5
done
echo

echo "== a job that needed retries"
"${CTL[@]}" get j11
echo
echo "== summary"
for state in SUCCEEDED FAILED EXHAUSTED CANCELLED; do
  printf '   %-10s %5d jobs\n' "$state" "$("${CTL[@]}" --json list --state "$state" --all | wc -l)"
done
# Every attempt of every job, from GetSync's attempt history.
"${CTL[@]}" --json list --all | grep -o '"jobId":"j[0-9]*"' | cut -d'"' -f4 |
  while read -r id; do "${CTL[@]}" --json get "$id"; done >"$WORK/jobs.json"
awk -v jobs="$JOBS" '
  { n = gsub(/"number":/, "&"); attempts += n
    retry += gsub(/"classification":"retry"/, "&")
    limited += gsub(/"classification":"rate_limited"/, "&")
    permanent += gsub(/"classification":"permanent"/, "&")
    transport += gsub(/"transportError":"[a-z]+"/, "&")
    ra += gsub(/Retry-After [0-9]/, "&") }
  END {
    printf "   %d upstream attempts for %d jobs: %d retries\n", attempts, jobs, attempts - jobs
    printf "   outcomes: %d retryable, %d rate limited, %d permanent, %d transport errors\n",
           retry, limited, permanent, transport
    printf "   %d retries waited for the upstream'"'"'s Retry-After (longer than the backoff)\n", ra
  }' "$WORK/jobs.json"
echo "   dead letters: reboundctl list --state FAILED --state EXHAUSTED; replay one with reboundctl replay ID"
echo
echo "== what Prometheus sees (http://127.0.0.1:$(cat "$WORK/metrics.port")/metrics)"
curl -s "http://127.0.0.1:$(cat "$WORK/metrics.port")/metrics" |
  grep -E '^rebound_(attempts_total|retries_total|jobs_completed_total|dead_letter_jobs)\{' |
  grep -v ' 0$' | sed 's/^/   /'
echo
echo "== the server's last log lines (JSON, one per event)"
grep '"event":"retry_scheduled"' "$WORK/server.log" | tail -n 2 | sed 's/^/   /'
