#!/usr/bin/env bash
# Checks of deploy/kubernetes (kustomize); tests/deploy/CMakeLists.txt registers one ctest test
# per check (ctest -L deploy).
#
#   check_kubernetes.sh [--root DIR] [--server BIN] [--tools DIR] CHECK...
#
#   render           `kubectl kustomize` renders base, every overlays/* and monitoring
#                    (base, overlays/sqlite, overlays/sqlite-in-namespace and monitoring must
#                    exist), with Debian 12's kubectl 1.20 (kustomize v2) as with today's
#   schema           every rendered object validates against its Kubernetes schema (npm
#                    kubernetes-models; ServiceMonitor and PrometheusRule against
#                    @kubernetes-models/prometheus-operator), offline, strictly: a field the
#                    schema does not know (`livenesProbe`, `replicaz`) fails
#   policy           k8s.jq: every container non-root, no privilege escalation, drops ALL,
#                    read-only root with /tmp mounted, seccomp RuntimeDefault, liveness and
#                    readiness probes, resource requests and limits; Rebound's native gRPC probes
#                    on its grpc port; Service and NetworkPolicy select its pods; no Secret
#                    objects or literal credentials; the recommended app.kubernetes.io labels on
#                    every object and selectors on name + instance; a fully qualified image with
#                    a tag; no Namespace except in overlays/sqlite-in-namespace;
#                    overlays/sqlite: 1 replica, Recreate, a ReadWriteOnce claim; monitoring/
#                    scrapes the overlay's Service port metrics, also with a release label set by
#                    an overlay (kube-prometheus-stack's selector)
#   config           the config in each render's ConfigMap passes `BIN --check-config`, listens
#                    on 0.0.0.0 on the container's ports, keeps the database on a writable
#                    mount, and terminationGracePeriodSeconds exceeds preStop + shutdown_grace
#   monitoring-sync  monitoring/prometheusrule.yaml holds exactly deploy/prometheus/alerts.yaml's
#                    groups and monitoring/rebound-dashboard.json equals the dashboard
#                    (monitoring/generate.sh rewrites both)
#   all              all of the above
#
# Needs kubectl (Debian package kubernetes-client, or any newer kubectl; KUBECTL names another
# program) for render, schema, policy and config: a missing one fails them, like a missing jq.
# --server: rebound-server (CMake passes it). --tools: where `npm ci` installs the validators.
# --root DIR checks another tree (the self-test runs it on broken copies).
# Needs jq and yq (Debian packages jq, yq), node and npm (Debian's nodejs and npm).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"
root=$(cd "$here/../.." && pwd)
server=""
tools=${XDG_CACHE_HOME:-$HOME/.cache}/rebound/deploy-npm
while [[ $# -gt 0 ]]; do
  case $1 in
    --root) root=$(cd "$2" && pwd); shift 2 ;;
    --server) server=$2; shift 2 ;;
    --tools) tools=$2; shift 2 ;;
    *) break ;;
  esac
done
if [[ $# -eq 0 ]]; then
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
  exit 2
fi
# shellcheck source=npm_tools.sh
source "$here/npm_tools.sh"

kubectl=${KUBECTL:-kubectl}
k8s=$root/deploy/kubernetes
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
need jq jq
need yq yq


# The kustomizations: base, every overlay, monitoring (relative to deploy/kubernetes).
targets() {
  local dir
  echo base
  for dir in "$k8s"/overlays/*/; do
    [[ -f $dir/kustomization.yaml ]] && echo "overlays/$(basename "$dir")"
  done
  echo monitoring
}

# render TARGET: the objects as a JSON array in $scratch/<target>.json.
render() {
  local target=$1 out=$scratch/${1//\//_}
  [[ -f $out.json ]] && return 0
  if [[ ! -f $k8s/$target/kustomization.yaml ]]; then
    echo "FAIL: $k8s/$target/kustomization.yaml is missing" >&2
    return 1
  fi
  if ! "$kubectl" kustomize "$k8s/$target" >"$out.yaml" 2>"$out.err"; then
    echo "FAIL: kubectl kustomize $target:" >&2
    sed 's/^/  /' "$out.err" >&2
    return 1
  fi
  yq -s . "$out.yaml" >"$out.json" || { echo "FAIL: the render of $target is not YAML" >&2; return 1; }
}

# Rendering checks fail, rather than skip or pass, without kubectl.
have_kubectl() {
  if ! command -v "$kubectl" >/dev/null 2>&1; then
    echo "FAIL: '$kubectl' not found: cannot render deploy/kubernetes; install the Debian" \
         "package 'kubernetes-client' (scripts/install-deps.sh does)" >&2
    return 1
  fi
}

check_render() {
  local target problems=""
  for required in base overlays/sqlite overlays/sqlite-in-namespace monitoring; do
    [[ -d $k8s/$required ]] || problems+="deploy/kubernetes/$required is missing"$'\n'
  done
  for target in $(targets); do
    if render "$target"; then
      echo "  $target: $(jq -r 'map(.kind) | join(", ")' "$scratch/${target//\//_}.json")"
    else
      problems+="$target does not render"$'\n'
    fi
  done
  report "kubectl kustomize renders $(targets | tr '\n' ' ')" "${problems%$'\n'}"
}

check_schema() {
  npm_tools "$tools" || return 1
  local target failed=0
  for target in $(targets); do
    render "$target" || { failed=1; continue; }
    if ! node "$here/k8s_validate.mjs" "$npm_modules" "$scratch/${target//\//_}.json" \
        >"$scratch/schema.out" 2>&1; then
      echo "FAIL: $target does not validate:" >&2
      grep -v '^ok:' "$scratch/schema.out" | sed 's/^/  /' >&2
      failed=1
    else
      echo "ok: $target: $(wc -l <"$scratch/schema.out") objects valid"
    fi
  done
  return "$failed"
}

k8sjq() { jq -L "$here" "$@"; }

check_policy() {
  local target found="" out
  for target in $(targets); do
    [[ $target == monitoring ]] && continue
    render "$target" || { found+="$target does not render"$'\n'; continue; }
    out=$(k8sjq -r --argjson ns "$([[ $target == overlays/sqlite-in-namespace ]] && echo true || echo false)" \
      'include "k8s"; policy_problems, namespace_problems($ns)' "$scratch/${target//\//_}.json") || return 1
    [[ -n $out ]] && found+=$(sed "s|^|$target: |" <<<"$out")$'\n'
  done
  render overlays/sqlite || return 1
  out=$(k8sjq -r 'include "k8s"; sqlite_problems' "$scratch/overlays_sqlite.json") || return 1
  [[ -n $out ]] && found+=$(sed "s|^|overlays/sqlite: |" <<<"$out")$'\n'
  render monitoring || return 1
  out=$(k8sjq -r --slurpfile app "$scratch/overlays_sqlite.json" \
    'include "k8s"; monitoring_problems($app[0]), namespace_problems(false)' "$scratch/monitoring.json") || return 1
  [[ -n $out ]] && found+=$(sed "s|^|monitoring: |" <<<"$out")$'\n'
  # kube-prometheus-stack's release label, set as monitoring/kustomization.yaml says: an overlay
  # (a copy of monitoring/ beside it, as kustomize takes no absolute base path) with
  # commonLabels. Both selected kinds carry it, and the ServiceMonitor still finds the Service.
  rm -rf "$scratch/release" && mkdir -p "$scratch/release/overlay" || return 1
  cp -r "$k8s/monitoring" "$scratch/release/monitoring" || return 1
  printf 'bases:\n  - ../monitoring\ncommonLabels:\n  release: kube-prometheus-stack\n' \
    >"$scratch/release/overlay/kustomization.yaml"
  if ! "$kubectl" kustomize "$scratch/release/overlay" >"$scratch/release.yaml" 2>"$scratch/release.err"; then
    found+="monitoring with a release label: kubectl kustomize fails: $(grep -v '^# Warning' "$scratch/release.err")"$'\n'
  else
    yq -s . "$scratch/release.yaml" >"$scratch/release.json" || return 1
    out=$(k8sjq -r --slurpfile app "$scratch/overlays_sqlite.json" 'include "k8s";
        monitoring_problems($app[0]),
        (.[] | select(.kind | IN("ServiceMonitor", "PrometheusRule"))
         | select(.metadata.labels.release != "kube-prometheus-stack")
         | "\(where): commonLabels did not set its release label")' "$scratch/release.json") || return 1
    [[ -n $out ]] && found+=$(sed "s|^|monitoring with release=kube-prometheus-stack: |" <<<"$out")$'\n'
  fi
  report "pod security, probes, resources, selectors and secrets" "${found%$'\n'}"
}

# seconds DURATION: "10s", "1m30s", "500ms" -> seconds (rounded up).
seconds() {
  local d=$1 total_ms=0 n u
  [[ $d =~ ^([0-9]+(h|ms|m|s))+$ ]] || { echo "bad duration '$d'" >&2; return 1; }
  while [[ $d =~ ^([0-9]+)(h|ms|m|s)(.*)$ ]]; do
    n=${BASH_REMATCH[1]} u=${BASH_REMATCH[2]} d=${BASH_REMATCH[3]}
    case $u in
      h) total_ms=$((total_ms + n * 3600000)) ;;
      m) total_ms=$((total_ms + n * 60000)) ;;
      s) total_ms=$((total_ms + n * 1000)) ;;
      ms) total_ms=$((total_ms + n)) ;;
    esac
  done
  echo $(((total_ms + 999) / 1000))
}

check_config() {
  if [[ -z $server || ! -x $server ]]; then
    echo "FAIL: --server '$server' is not an executable rebound-server (build it first)" >&2
    return 1
  fi
  local target problems="" json cfg n
  for target in $(targets); do
    [[ $target == monitoring ]] && continue
    render "$target" || return 1
    json=$scratch/${target//\//_}.json
    n=$(jq '[.[] | select(.kind == "ConfigMap" and (.data["rebound.yaml"] != null))] | length' "$json")
    if [[ $n -ne 1 ]]; then
      problems+="$target: $n ConfigMaps with a rebound.yaml, expected 1"$'\n'
      continue
    fi
    cfg=$scratch/${target//\//_}.rebound.yaml
    jq -r '.[] | select(.kind == "ConfigMap" and (.data["rebound.yaml"] != null)) | .data["rebound.yaml"]' \
      "$json" >"$cfg"
    if ! "$server" --check-config "$cfg" >"$scratch/check.out" 2>&1; then
      problems+="$target: rebound-server --check-config: $(cat "$scratch/check.out")"$'\n'
      continue
    fi
    # The config against the Deployment that mounts it.
    local dep grpc metrics path grace prestop tgps mounts
    dep=$(jq -c '[.[] | select(.kind == "Deployment" and .metadata.name == "rebound")][0]' "$json")
    grpc=$(yq -r '.server.grpc_listen // "127.0.0.1:50051"' "$cfg")
    metrics=$(yq -r '.server.metrics_listen // "127.0.0.1:9464"' "$cfg")
    path=$(yq -r '.store.path // "rebound.db"' "$cfg")
    grace=$(seconds "$(yq -r '.server.shutdown_grace // "10s"' "$cfg")") || return 1
    for pair in "grpc=$grpc" "metrics=$metrics"; do
      local name=${pair%%=*} addr=${pair#*=} port
      port=$(jq -r --arg n "$name" '.spec.template.spec.containers[] | select(.name == "rebound")
        | .ports[] | select(.name == $n) | .containerPort' <<<"$dep")
      [[ $addr == "0.0.0.0:$port" || $addr == "[::]:$port" ]] \
        || problems+="$target: ${name}_listen is '$addr'; in a pod it must be 0.0.0.0:$port (the container's port $name)"$'\n'
    done
    mounts=$(jq -r '.spec.template.spec.containers[] | select(.name == "rebound") | .volumeMounts[]
      | select(.readOnly != true) | .mountPath' <<<"$dep")
    local on_mount=0 m
    for m in $mounts; do [[ $path == "$m"/* ]] && on_mount=1; done
    [[ $on_mount -eq 1 ]] \
      || problems+="$target: store.path '$path' is not on a writable volume mount of the container (the root filesystem is read-only)"$'\n'
    tgps=$(jq -r '.spec.template.spec.terminationGracePeriodSeconds // 30' <<<"$dep")
    prestop=$(jq -r '.spec.template.spec.containers[] | select(.name == "rebound") | .lifecycle.preStop
      | if . == null then 0 elif .sleep then .sleep.seconds
        elif (.exec.command // [] | .[0] // "" | test("sleep$")) then (.exec.command[1] | tonumber)
        else 0 end' <<<"$dep")
    # 2s for the final commit and exit (326ms with a million jobs waiting: docs/benchmarks.md).
    ((tgps >= prestop + grace + 2)) \
      || problems+="$target: terminationGracePeriodSeconds $tgps < preStop $prestop s + shutdown_grace $grace s + 2 s: the kubelet would kill the server mid-drain"$'\n'
    echo "  $target: $(cat "$scratch/check.out")"
  done
  report "the ConfigMap's config" "${problems%$'\n'}"
}

check_monitoring_sync() {
  local mon=$k8s/monitoring problems=""
  local alerts=$root/deploy/prometheus/alerts.yaml dashboard=$root/deploy/grafana/rebound-dashboard.json
  if [[ ! -f $mon/prometheusrule.yaml ]]; then
    problems+="$mon/prometheusrule.yaml is missing"$'\n'
  elif ! diff <(yq -S '.groups' "$alerts") <(yq -S '.spec.groups' "$mon/prometheusrule.yaml") \
      >"$scratch/rules.diff" 2>&1; then
    problems+="monitoring/prometheusrule.yaml's groups differ from deploy/prometheus/alerts.yaml (run deploy/kubernetes/monitoring/generate.sh):"$'\n'
    problems+=$(head -n 20 "$scratch/rules.diff")$'\n'
  fi
  [[ $(yq -r '.kind' "$mon/prometheusrule.yaml" 2>/dev/null) == PrometheusRule ]] \
    || problems+="monitoring/prometheusrule.yaml is not a PrometheusRule"$'\n'
  cmp -s "$dashboard" "$mon/rebound-dashboard.json" \
    || problems+="monitoring/rebound-dashboard.json differs from deploy/grafana/rebound-dashboard.json (run deploy/kubernetes/monitoring/generate.sh)"$'\n'
  report "monitoring/ matches deploy/prometheus and deploy/grafana" "${problems%$'\n'}"
}

checks=("$@")
if [[ ${#checks[@]} -eq 1 && ${checks[0]} == all ]]; then
  checks=(render schema policy config monitoring-sync)
fi
failed=0
for check in "${checks[@]}"; do
  case $check in
    render | schema | policy | config)
      if ! have_kubectl; then
        failed=1
        continue
      fi
      ;;
  esac
  case $check in
    render) check_render || failed=1 ;;
    schema) check_schema || failed=1 ;;
    policy) check_policy || failed=1 ;;
    config) check_config || failed=1 ;;
    monitoring-sync) check_monitoring_sync || failed=1 ;;
    *)
      echo "unknown check '$check'" >&2
      exit 2
      ;;
  esac
done
exit "$failed"
