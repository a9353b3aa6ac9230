#!/usr/bin/env bash
# Proves that check_deploy.sh can fail: each case copies deploy/ into a scratch tree, breaks one
# thing, and expects the named check to fail with the expected message. A check that passes on a
# broken copy, or a mutation that no longer changes anything, fails this test.
#
#   check_deploy_selftest.sh [--root DIR]
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
if [[ ${1:-} == --root ]]; then
  root=$(cd "$2" && pwd)
fi
check=$here/check_deploy.sh

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# shellcheck source=selftest_lib.sh
source "$here/selftest_lib.sh"

dashboard=deploy/grafana/rebound-dashboard.json
alerts=deploy/prometheus/alerts.yaml
metrics=deploy/metrics.txt

# In-place edits of the scratch copy (the working directory is the scratch tree).
sed_in() { sed -i "$2" "$1"; }
jq_in() { jq "$2" "$1" >"$1.new" && mv "$1.new" "$1"; }

digest() { cat "$dashboard" deploy/prometheus/*.yaml "$metrics" | cksum; }

deploy_check=(bash "$check")

# expect_failure NAME CHECK EXPECTED MUTATION...: apply MUTATION (a command) to a fresh copy,
# then CHECK must fail and print EXPECTED.
expect_failure() {
  local name=$1 check_name=$2 expected=$3
  shift 3
  mkdir -p "$work/$name"
  cp -r "$root/deploy" "$work/$name/"
  mutation_fails "$name" "$work/$name" "$check_name" "$expected" deploy_check "$@"
}

# The unbroken copy passes every check (or the cases below prove nothing).
mkdir -p "$work/baseline"
cp -r "$root/deploy" "$work/baseline/"
if output=$(bash "$check" --root "$work/baseline" all 2>&1); then
  echo "ok: baseline (all checks pass on an unmodified copy)"
  passed=$((passed + 1))
else
  fail "baseline: the unmodified copy fails its checks:"
  sed 's/^/    /' <<<"$output" >&2
fi

# ---- alerts.yaml ----
expect_failure rule-syntax rules "parse error" \
  sed_in "$alerts" 's/max by (endpoint) (rebound_circuit_state) > 0$/max by (endpoint) (rebound_circuit_state) > > 0/'
expect_failure rule-threshold rules-test "FAILED" \
  sed_in "$alerts" 's/^          ) > 0.5$/          ) > 0.9/'
add_untested_alert() {
  cat >>"$alerts" <<'EOF'
      - alert: ReboundUntested
        expr: vector(1)
        for: 1m
        labels:
          severity: info
        annotations:
          summary: s
          description: d
          runbook: "Means: m. Check: c. Do: d."
EOF
}
expect_failure rule-untested rules-test "alert ReboundUntested has no test" add_untested_alert
expect_failure alert-missing alerts-meta "missing alert ReboundCircuitOpen" \
  sed_in "$alerts" 's/alert: ReboundCircuitOpen$/alert: ReboundCircuitOpenLong/'
expect_failure alert-no-for alerts-meta "alert ReboundHighRetryRatio: needs a for: duration" \
  sed_in "$alerts" '0,/^        for: 10m$/{/^        for: 10m$/d}'
expect_failure alert-severity alerts-meta "labels.severity must be" \
  sed_in "$alerts" '0,/severity: warning/s//severity: page/'
expect_failure alert-runbook alerts-meta "alert ReboundHighRetryRatio: the runbook has no 'Check:' part" \
  sed_in "$alerts" '0,/^            Check: /s//            Look: /'

# ---- the dashboard ----
expect_failure dashboard-json dashboard "is not valid JSON" sed_in "$dashboard" '$d'
expect_failure dashboard-no-endpoint-variable dashboard "no template variable named endpoint" \
  jq_in "$dashboard" 'del(.templating.list[] | select(.name == "endpoint"))'
expect_failure dashboard-datasource dashboard "datasource must be" \
  jq_in "$dashboard" '(.panels[] | select(.type != "row") | .targets[0].datasource.uid) |= "prometheus" '
expect_failure dashboard-endpoint-filter dashboard "is not filtered by endpoint" \
  jq_in "$dashboard" '(.panels[] | select(.id == 11) | .targets[0].expr) |= sub(", endpoint=~\"\\$endpoint\""; "")'
expect_failure dashboard-hard-coded-job dashboard 'has a hard-coded job label (use job=~"$job")' \
  jq_in "$dashboard" '(.panels[] | select(.id == 39) | .targets[0].expr) |= sub("job=~\"\\$job\""; "job=\"rebound\"")'
expect_failure dashboard-unscoped dashboard 'a selector of rebound_jobs is not scoped by namespace=~"$namespace"' \
  jq_in "$dashboard" '(.panels[] | select(.id == 24) | .targets[0].expr) |= sub("namespace=~\"\\$namespace\", "; "")'
expect_failure dashboard-no-cluster-variable dashboard "no template variable named cluster" \
  jq_in "$dashboard" 'del(.templating.list[] | select(.name == "cluster"))'
expect_failure dashboard-zero-legend dashboard "split by grpc_code, grpc_method, grpc_service without" \
  jq_in "$dashboard" '(.panels[] | select(.id == 36) | .targets[0].expr) |= sub(" > 0$"; "")'
expect_failure dashboard-top-row-dead-letters dashboard "the top row shows no rebound_dead_letter_jobs" \
  jq_in "$dashboard" 'del(.panels[] | select(.id == 7))'
expect_failure dashboard-top-row-runbook dashboard '"Top failure classifications per endpoint": a panel of the top row has no link to the runbooks' \
  jq_in "$dashboard" 'del(.panels[] | select(.id == 45) | .links)'
expect_failure dashboard-expr-syntax dashboard-promql "does not parse" \
  jq_in "$dashboard" '(first(.panels[] | select(.type == "timeseries")) | .targets[0].expr) |= . + ")"'
expect_failure dashboard-unknown-variable dashboard-promql "unknown Grafana variable" \
  sed_in "$dashboard" '0,/\$__rate_interval/s//$__rate_intervall/'

# ---- metric names ----
expect_failure metric-renamed-in-dashboard metric-names "rebound_retry_total is not an exported metric" \
  sed_in "$dashboard" 's/rebound_retries_total/rebound_retry_total/g'
expect_failure metric-renamed-in-alerts metric-names \
  "rule ReboundDeadLettersGrowing: rebound_dead_letters is not an exported metric" \
  sed_in "$alerts" 's/rebound_dead_letter_jobs\[/rebound_dead_letters[/'
expect_failure metric-not-exported metric-names "rebound_jobs is not an exported metric" \
  sed_in "$metrics" '/^rebound_jobs$/d'
expect_failure metric-not-shown metric-names "rebound_queue_age_seconds is exported but no dashboard panel shows it" \
  sed_in "$metrics" '$a rebound_queue_age_seconds'
expect_failure dashboard-top-row-wait-reasons dashboard "the top row shows no rebound_jobs_waiting" \
  jq_in "$dashboard" 'del(.panels[] | select(.id == 47))'

# ---- a missing tool fails, it does not skip ----
bin=$work/bin-without-promtool
mkdir -p "$bin"
for tool in bash dirname mktemp rm sed grep cat basename jq yq; do
  ln -s "$(command -v "$tool")" "$bin/$tool"
done
mkdir -p "$work/no-promtool"
cp -r "$root/deploy" "$work/no-promtool/"
if output=$(PATH=$bin "$bin/bash" "$check" --root "$work/no-promtool" rules 2>&1); then
  fail "no-promtool: check 'rules' passed without promtool"
elif ! grep -qF "'promtool' not found" <<<"$output"; then
  fail "no-promtool: check 'rules' failed without naming promtool: $output"
else
  echo "ok: no-promtool (rules fails)"
  passed=$((passed + 1))
fi

echo "deploy self-test: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
