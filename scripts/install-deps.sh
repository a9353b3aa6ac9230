#!/usr/bin/env bash
# Installs every build, run and test dependency from Debian 12 (bookworm) packages, as root or
# through sudo. Idempotent: installs only what is missing, and exits at once when nothing is.
#
# - Node.js and npm (Debian's nodejs 18 and npm 9): the deploy checks' validators
#   (tests/deploy/package-lock.json, installed by `npm ci` at test time).
# - kubectl: Debian's kubernetes-client (1.20, with kustomize v2): the Kubernetes checks render
#   deploy/kubernetes with it.
# - promtool: Debian ships it only inside the package `prometheus`, whose postinst enables and
#   starts a Prometheus server listening on 0.0.0.0:9090. When this script installs it, it keeps
#   that server from starting: a temporary /usr/sbin/policy-rc.d answers 101 ("not allowed") to
#   invoke-rc.d and deb-systemd-invoke during the install (unless one already exists), and on a
#   machine run by systemd the unit is then disabled and stopped, so it does not start at the
#   next boot either. It is left installed and not masked: `systemctl enable --now prometheus`
#   starts it if you want one.
# - python3-grpcio, python3-protobuf, python3-pytest: the Python client (client/python) and its
#   tests, run with Debian's /usr/bin/python3; its stubs come from protoc and the
#   grpc_python_plugin of protobuf-compiler-grpc (python3-grpc-tools is gRPC 1.14: too old).
# A command already on PATH from another source (a newer node, npm or kubectl) is kept: its
# Debian package is not installed over it.
set -euo pipefail
PACKAGES=(
  build-essential cmake ninja-build pkg-config git ca-certificates
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler grpc-proto
  libabsl-dev prometheus-cpp-dev libcurl4-openssl-dev libssl-dev libsqlite3-dev sqlite3
  libyaml-cpp-dev nlohmann-json3-dev libre2-dev libcli11-dev libevent-dev
  libgtest-dev libgmock-dev libbenchmark-dev clang-format
  prometheus jq yq curl iproute2
  python3-grpcio python3-protobuf python3-pytest
)
# COMMAND:PACKAGE pairs: the package is needed only when the command is not on PATH.
COMMANDS=(node:nodejs npm:npm kubectl:kubernetes-client)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
for pair in "${COMMANDS[@]}"; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages and ${#COMMANDS[@]} commands present"
  exit 0
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "install-deps: missing ${missing[*]}; this needs root and sudo is not installed:" >&2
    echo "  run it as root (su -c scripts/install-deps.sh), or install sudo first" >&2
    exit 1
  fi
  SUDO=(sudo)
fi

# Keep the Prometheus server of the prometheus package from starting (see above).
policy_rc=/usr/sbin/policy-rc.d
own_policy=0
case " ${missing[*]} " in
  *" prometheus "*)
    if [ ! -e "$policy_rc" ]; then
      printf '#!/bin/sh\n# scripts/install-deps.sh: no daemon starts during its apt-get install\nexit 101\n' |
        "${SUDO[@]}" tee "$policy_rc" >/dev/null
      "${SUDO[@]}" chmod 755 "$policy_rc"
      own_policy=1
    fi
    ;;
esac
cleanup() {
  if [ "$own_policy" -eq 1 ]; then "${SUDO[@]}" rm -f "$policy_rc"; fi
}
trap cleanup EXIT

echo "install-deps: installing ${missing[*]}"
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -qq --no-install-recommends "${missing[@]}"

case " ${missing[*]} " in
  *" prometheus "*)
    if [ -d /run/systemd/system ]; then
      "${SUDO[@]}" systemctl disable --now prometheus.service >/dev/null 2>&1 || true
    fi
    echo "install-deps: installed promtool (package prometheus); its server was not started" \
         "and is disabled (systemctl enable --now prometheus starts one)"
    ;;
esac
