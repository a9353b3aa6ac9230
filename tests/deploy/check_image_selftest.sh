#!/usr/bin/env bash
# Proves that check_docker.sh and check_kubernetes.sh can fail: each case copies the Dockerfile,
# config/ and deploy/ into a scratch tree, breaks one thing, and expects the named check to fail
# with the expected message. A check that passes on a broken copy, or a mutation that no longer
# changes anything, fails this test. Needs kubectl like check_kubernetes.sh (Debian's
# kubernetes-client is enough).
#
#   check_image_selftest.sh [--root DIR] --server BIN --ctl BIN [--tools DIR]
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
server="" ctl=""
tools=${XDG_CACHE_HOME:-$HOME/.cache}/rebound/deploy-npm
while [[ $# -gt 0 ]]; do
  case $1 in
    --root) root=$(cd "$2" && pwd); shift 2 ;;
    --server) server=$2; shift 2 ;;
    --ctl) ctl=$2; shift 2 ;;
    --tools) tools=$2; shift 2 ;;
    *) echo "unknown argument '$1'" >&2; exit 2 ;;
  esac
done
docker_check=(bash "$here/check_docker.sh" --binary "$server" --binary "$ctl" --tools "$tools")
k8s_check=(bash "$here/check_kubernetes.sh" --server "$server" --tools "$tools")

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# shellcheck source=selftest_lib.sh
source "$here/selftest_lib.sh"

base=deploy/kubernetes/base
deployment=$base/deployment.yaml

sed_in() { sed -i "$2" "$1"; }
digest() { find Dockerfile config deploy -type f -print0 | sort -z | xargs -0 cat | cksum; }

copy_tree() {
  mkdir -p "$1"
  cp -r "$root/Dockerfile" "$root/config" "$root/deploy" "$1/"
}

# expect_failure NAME SCRIPT CHECK EXPECTED MUTATION...: apply MUTATION to a fresh copy; then
# CHECK of SCRIPT (docker or k8s) must fail and print EXPECTED.
expect_failure() {
  local name=$1 script=$2 check_name=$3 expected=$4
  shift 4
  copy_tree "$work/$name"
  mutation_fails "$name" "$work/$name" "$check_name" "$expected" "${script}_check" "$@"
}

# The unbroken copy passes (or the cases below prove nothing).
copy_tree "$work/baseline"
# baseline_passes WHAT CMD_ARRAY: every check of CMD passes on the unmodified copy.
baseline_passes() {
  local -n baseline_cmd=$2
  local output
  if output=$("${baseline_cmd[@]}" --root "$work/baseline" all 2>&1); then
    echo "ok: baseline $1 checks"
    passed=$((passed + 1))
  else
    fail "baseline: the unmodified copy fails the $1 checks:"
    sed 's/^/    /' <<<"$output" >&2
  fi
}
baseline_passes docker docker_check
baseline_passes kubernetes k8s_check

# ---- Dockerfile ----
expect_failure docker-syntax docker lint "dockerfile-utils" sed_in Dockerfile 's/^WORKDIR \/src$/WORKDIRR \/src/'
expect_failure docker-recommends docker lint "without --no-install-recommends" \
  sed_in Dockerfile 's/ --no-install-recommends//'
expect_failure docker-apt-lists docker lint "does not rm -rf /var/lib/apt/lists" \
  sed_in Dockerfile 's|^ && rm -rf /var/lib/apt/lists/\* \\$| \&\& true \\|'
expect_failure docker-root docker lint "is not a numeric non-root uid" sed_in Dockerfile 's/^USER 10001:10001$/USER rebound/'
expect_failure docker-shell-entrypoint docker lint "ENTRYPOINT is not in exec form" \
  sed_in Dockerfile 's|^ENTRYPOINT .*|ENTRYPOINT /usr/local/bin/rebound-server|'
expect_failure docker-expose docker lint "does not EXPOSE 9464" sed_in Dockerfile 's/^EXPOSE 50051 9464$/EXPOSE 50051/'
expect_failure docker-base docker lint "is not FROM debian:bookworm-slim" \
  sed_in Dockerfile 's/^FROM debian:bookworm-slim$/FROM debian:bookworm/'
expect_failure docker-healthcheck docker lint "has no HEALTHCHECK" sed_in Dockerfile '/^HEALTHCHECK /,/^  CMD /d'
expect_failure ldd-missing docker ldd "(Debian package libsqlite3-0), which the runtime stage does not install" \
  sed_in Dockerfile '/^      libsqlite3-0 \\$/d'
expect_failure ldd-unneeded docker ldd "installs libevent-2.1-7, which no binary loads" \
  sed_in Dockerfile 's/^      libyaml-cpp0.7 \\$/      libyaml-cpp0.7 libevent-2.1-7 \\/'
expect_failure image-config-listen docker default-config "not 0.0.0.0:9464" \
  sed_in Dockerfile "/-e 's\/^\\\\(  metrics_listen/d"
expect_failure image-config-sample-changed docker default-config "changes nothing in config/rebound.yaml" \
  sed_in config/rebound.yaml 's/^  path: rebound.db$/  path: jobs.db/'

# ---- deploy/kubernetes ----
expect_failure k8s-render k8s render "does not render" sed_in $base/kustomization.yaml 's/- service.yaml/- services.yaml/'
expect_failure k8s-schema k8s schema "containerPort must be integer" \
  sed_in $deployment 's/containerPort: 9464/containerPort: "9464"/'
expect_failure k8s-root k8s policy "runs as root (runAsUser 0)" sed_in $deployment 's/runAsUser: 10001/runAsUser: 0/'
expect_failure k8s-nonroot k8s policy "runAsNonRoot is not true" sed_in $deployment 's/runAsNonRoot: true/runAsNonRoot: false/'
expect_failure k8s-escalation k8s policy "allowPrivilegeEscalation is not false" \
  sed_in $deployment 's/allowPrivilegeEscalation: false/allowPrivilegeEscalation: true/'
expect_failure k8s-caps k8s policy "capabilities do not drop ALL" sed_in $deployment 's/drop: \["ALL"\]/drop: ["NET_RAW"]/'
expect_failure k8s-rootfs k8s policy "readOnlyRootFilesystem is not true" \
  sed_in $deployment 's/readOnlyRootFilesystem: true/readOnlyRootFilesystem: false/'
expect_failure k8s-readiness k8s policy "no readinessProbe" sed_in $deployment 's/readinessProbe:/x-readinessProbe:/'
expect_failure k8s-limits k8s policy "no resources.limits.memory" sed_in $deployment 's/^              memory: 1Gi$//'
expect_failure k8s-probe-port k8s policy "livenessProbe probes port 9464" \
  sed_in $deployment '/livenessProbe:/,/port:/s/port: 50051/port: 9464/'
expect_failure k8s-netpol-selector k8s policy "does not select Rebound's pods" \
  sed_in $base/networkpolicy.yaml '/podSelector:/,/instance:/s/^      app.kubernetes.io\/name: rebound$/      app.kubernetes.io\/name: other/'
expect_failure k8s-literal-secret k8s policy "env CANVAS_TOKEN has a literal value" \
  sed_in $deployment 's/^          envFrom:$/          env: [{name: CANVAS_TOKEN, value: "Bearer abc"}]\n          envFrom:/'
expect_failure k8s-sqlite-rolling k8s policy "strategy is not Recreate" \
  sed_in $deployment 's/type: Recreate/type: RollingUpdate/'
# A misspelled field is not silently ignored (kubectl apply would drop it: no liveness probe).
expect_failure k8s-typo-probe k8s schema 'unknown field "spec.template.spec.containers.0.livenesProbe"' \
  sed_in $deployment 's/^          livenessProbe:$/          livenesProbe:/'
expect_failure k8s-typo-replicas k8s schema 'unknown field "spec.replicaz"' \
  sed_in $deployment 's/^  replicas: 1$/  replicaz: 1/'
expect_failure k8s-typo-servicemonitor k8s schema 'unknown field "spec.endpoints.0.intervall"' \
  sed_in deploy/kubernetes/monitoring/servicemonitor.yaml 's/^      interval: 15s$/      intervall: 15s/'
expect_failure k8s-selector-name-only k8s policy "Service/rebound: its selector has no app.kubernetes.io/instance" \
  sed_in $base/service.yaml '/^  selector:$/,/^  ports:$/{/app.kubernetes.io\/instance/d}'
expect_failure k8s-label-missing k8s policy "ServiceAccount/rebound: no label app.kubernetes.io/managed-by" \
  sed_in $base/serviceaccount.yaml '/app.kubernetes.io\/managed-by/d'
expect_failure k8s-image-unqualified k8s policy "image 'rebound-server:0.1.0' is not fully qualified" \
  sed_in $deployment 's|image: registry.example.org/rebound/rebound-server:0.1.0|image: rebound-server:0.1.0|'
expect_failure k8s-image-untagged k8s policy "has no tag or digest" \
  sed_in $deployment 's|image: registry.example.org/rebound/rebound-server:0.1.0|image: registry.example.org/rebound/rebound-server|'
add_namespace_to_sqlite() {
  sed 's/^  name: rebound$/  name: lms-sync/' deploy/kubernetes/overlays/sqlite-in-namespace/namespace.yaml \
    >deploy/kubernetes/overlays/sqlite/namespace.yaml &&
    sed_in deploy/kubernetes/overlays/sqlite/kustomization.yaml 's/^  - pvc.yaml$/  - pvc.yaml\n  - namespace.yaml/'
}
expect_failure k8s-namespace-unasked k8s policy "overlays/sqlite: Namespace/lms-sync: a Namespace in this render" \
  add_namespace_to_sqlite
expect_failure k8s-servicemonitor-port k8s policy "port 'metricz' is not a port of the Service" \
  sed_in deploy/kubernetes/monitoring/servicemonitor.yaml 's/- port: metrics/- port: metricz/'
expect_failure k8s-config-invalid k8s config "--check-config" sed_in $base/rebound.yaml 's/synchronous: full/synchronous: fast/'
expect_failure k8s-config-loopback k8s config "grpc_listen is '127.0.0.1:50051'" \
  sed_in $base/rebound.yaml 's/grpc_listen: 0.0.0.0:50051/grpc_listen: 127.0.0.1:50051/'
expect_failure k8s-config-db-path k8s config "is not on a writable volume mount" \
  sed_in $base/rebound.yaml 's|path: /var/lib/rebound/rebound.db|path: /srv/rebound.db|'
expect_failure k8s-grace k8s config "the kubelet would kill the server mid-drain" \
  sed_in $base/rebound.yaml 's/shutdown_grace: 10s/shutdown_grace: 1m/'
expect_failure k8s-rules-stale k8s monitoring-sync "differ from deploy/prometheus/alerts.yaml" \
  sed_in deploy/prometheus/alerts.yaml 's/for: 10m/for: 20m/'
expect_failure k8s-dashboard-stale k8s monitoring-sync "rebound-dashboard.json differs" \
  sed_in deploy/grafana/rebound-dashboard.json 's/"title": "Rebound"/"title": "Rebound 2"/'

# ---- without kubectl the rendering checks fail, they do not skip or pass ----
copy_tree "$work/no-kubectl"
status=0
output=$(KUBECTL=/nonexistent/kubectl "${k8s_check[@]}" --root "$work/no-kubectl" render 2>&1) || status=$?
if [[ $status -eq 1 ]] && grep -qF "FAIL: '/nonexistent/kubectl' not found" <<<"$output"; then
  echo "ok: no-kubectl (render fails)"
  passed=$((passed + 1))
else
  fail "no-kubectl: render exited $status: $output"
fi

echo "image and kubernetes self-test: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
