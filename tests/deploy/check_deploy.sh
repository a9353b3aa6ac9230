#!/usr/bin/env bash
# Checks of the monitoring artifacts in deploy/; tests/deploy/CMakeLists.txt registers one ctest
# test per check (ctest -L deploy).
#
#   check_deploy.sh [--root DIR] CHECK...
#
#   rules             promtool check rules deploy/prometheus/alerts.yaml
#   rules-test        promtool test rules deploy/prometheus/alerts_test.yaml, and every alert of
#                     alerts.yaml appears in that test file
#   alerts-meta       the required alerts exist; each has a for: duration, a severity label and
#                     summary, description and runbook (Means / Check / Do) annotations
#   dashboard         deploy/grafana/rebound-dashboard.json is JSON with the datasource and
#                     endpoint variables; every panel and target uses ${datasource}; every
#                     selector of a metric with an endpoint label follows $endpoint
#   dashboard-promql  every PromQL expression of the dashboard parses: each becomes a recording
#                     rule of a scratch rules file (Grafana variables replaced) checked by promtool
#   metric-names      every metric the dashboard and the alerts name is in deploy/metrics.txt
#                     (histogram _bucket/_sum/_count and `up` allowed), and the dashboard shows
#                     every metric listed there
#   all               all of the above
#
# --root DIR checks the deploy/ of another tree (the self-test runs it on broken copies).
# Needs promtool (Debian package prometheus), jq and yq (Debian packages jq, yq). A missing tool
# fails the check instead of skipping it: CI installs them through scripts/install-deps.sh.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"
root=$(cd "$here/../.." && pwd)
if [[ ${1:-} == --root ]]; then
  root=$(cd "$2" && pwd)
  shift 2
fi
if [[ $# -eq 0 ]]; then
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
  exit 2
fi

dashboard=$root/deploy/grafana/rebound-dashboard.json
alerts=$root/deploy/prometheus/alerts.yaml
alerts_test=$root/deploy/prometheus/alerts_test.yaml
metrics=$root/deploy/metrics.txt

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT


pjq() { jq -L "$here" "$@"; }


# The functions below run under `check || failed=1`, where bash ignores `set -e`: every step
# that can fail says so with `|| return 1`.

# The alert rules as JSON, for jq.
alerts_json() {
  need yq yq
  yq . "$alerts" >"$scratch/alerts.json" || { echo "FAIL: yq cannot read $alerts" >&2; return 1; }
}

# problems FILTER [JQ ARGS...]: run a promql.jq filter that prints one problem a line.
problems() {
  local filter=$1
  shift
  pjq -r "include \"promql\"; $filter" "$@" || { echo "jq failed on: $filter" && return 1; }
}

check_rules() {
  need promtool prometheus
  promtool check rules "$alerts"
}

check_rules_test() {
  need promtool prometheus
  alerts_json || return 1
  (cd "$(dirname "$alerts_test")" && promtool test rules "$(basename "$alerts_test")") || return 1
  local untested="" names
  names=$(jq -r '.groups[]?.rules[]? | .alert // empty' "$scratch/alerts.json") || return 1
  for alert in $names; do
    if ! grep -Eq "alertname(: *|=\")$alert\b" "$alerts_test"; then
      untested+="alert $alert has no test in $(basename "$alerts_test")"$'\n'
    fi
  done
  report "every alert has a unit test" "${untested%$'\n'}"
}

check_alerts_meta() {
  need jq jq
  alerts_json || return 1
  local found
  found=$(problems alerts_problems "$scratch/alerts.json")
  report "alert metadata" "$found"
}

check_dashboard() {
  need jq jq
  if ! jq empty "$dashboard"; then
    echo "FAIL: $dashboard is not valid JSON" >&2
    return 1
  fi
  local found
  found=$(problems dashboard_problems "$dashboard")
  report "dashboard structure" "$found"
}

check_dashboard_promql() {
  need jq jq
  need promtool prometheus
  local leftovers
  leftovers=$(problems 'dashboard_exprs | select(.expr | grafana_to_promql | contains("$"))
      | "\(.where): unknown Grafana variable in: \(.expr)"' "$dashboard")
  report "dashboard uses only known Grafana variables" "$leftovers" || return 1
  # One recording rule per expression; the rule's name says where the expression comes from.
  pjq 'include "promql";
      {groups: [{name: "dashboard-expressions",
                 rules: [dashboard_exprs | {record: "dashboard:\(.id)",
                                            expr: (.expr | grafana_to_promql)}]}]}' \
    "$dashboard" >"$scratch/dashboard-rules.json" || return 1
  local count
  count=$(jq '.groups[0].rules | length' "$scratch/dashboard-rules.json") || return 1
  if [[ $count -eq 0 ]]; then
    echo "FAIL: the dashboard has no PromQL expression" >&2
    return 1
  fi
  if ! promtool check rules "$scratch/dashboard-rules.json" >"$scratch/promtool.out" 2>&1; then
    echo "FAIL: a dashboard expression does not parse (rule names: dashboard:panel_<id>_<refId>):" >&2
    sed 's/^/  /' "$scratch/promtool.out" >&2
    return 1
  fi
  echo "ok: all $count dashboard expressions parse"
}

check_metric_names() {
  need jq jq
  alerts_json || return 1
  [[ -f $metrics ]] || { echo "FAIL: $metrics is missing" >&2; return 1; }
  pjq -c 'include "promql"; dashboard_exprs' "$dashboard" >"$scratch/exprs.jsonl" || return 1
  pjq -c 'include "promql"; rule_exprs' "$scratch/alerts.json" >>"$scratch/exprs.jsonl" || return 1
  jq -s . "$scratch/exprs.jsonl" >"$scratch/exprs.json" || return 1
  pjq -c 'include "promql"; [dashboard_exprs | .expr | promql_names] | unique' "$dashboard" \
    >"$scratch/dashboard-names.json" || return 1
  local found
  found=$(problems 'metric_name_problems($metrics; $names[0])' --rawfile metrics "$metrics" \
    --slurpfile names "$scratch/dashboard-names.json" "$scratch/exprs.json")
  report "metric names" "$found"
}

checks=("$@")
if [[ ${#checks[@]} -eq 1 && ${checks[0]} == all ]]; then
  checks=(rules rules-test alerts-meta dashboard dashboard-promql metric-names)
fi
failed=0
for check in "${checks[@]}"; do
  case $check in
    rules) check_rules || failed=1 ;;
    rules-test) check_rules_test || failed=1 ;;
    alerts-meta) check_alerts_meta || failed=1 ;;
    dashboard) check_dashboard || failed=1 ;;
    dashboard-promql) check_dashboard_promql || failed=1 ;;
    metric-names) check_metric_names || failed=1 ;;
    *)
      echo "unknown check '$check'" >&2
      exit 2
      ;;
  esac
done
exit "$failed"
