#!/usr/bin/env bash
# Builds the root Dockerfile's image and runs it for real (the checks of check_docker.sh read the
# Dockerfile; this one runs the result):
#
#   check_image_run.sh --ctl BUILD/client/reboundctl [--root DIR] [--cache DIR] [--keep-image]
#
#   1. a Docker daemon: $DOCKER_HOST when it answers, else a private dockerd started here
#      (root only; data in --cache, default ~/.cache/rebound/docker) and stopped by its PID at
#      the end
#   2. base images: no registry is needed. When debian:bookworm-slim or debian:bookworm is
#      missing, one minimal bookworm root made by `mmdebstrap --variant=minbase` from this
#      machine's apt sources (/etc/apt) is imported under both names
#   3. docker build --build-arg REVISION=$(git rev-parse --short HEAD) (the build runs
#      scripts/install-deps.sh, so apt inside the build needs a Debian mirror)
#   4. docker run with the gRPC and metrics ports published on 127.0.0.1, then:
#      - `reboundctl health` (the build tree's) through the published port says SERVING,
#        and `--service rebound.v1.Rebound` too
#      - the server runs as uid 10001 (docker top), the image's USER is 10001:10001
#      - `rebound-server --version`, `reboundctl --version` and rebound_build_info (scraped
#        through the published metrics port) carry the revision
#      - Docker's HEALTHCHECK (reboundctl health inside the image) reports healthy
#      - `docker stop` (SIGTERM) ends the server with exit code 0
#      - a root-owned bind mount: the server exits 1 and its error says to chown it to uid 10001;
#        after `chown 10001:10001` the same mount serves
#
# Exit 0 when every check passed, 1 when one failed, 77 (skipped, with the reason) when no Docker
# daemon can be had here. Prints the time of each step. Stops and removes everything it started
# (containers by id, the daemon by PID); keeps the cache (base and build-stage layers) for the
# next run, and the image only with --keep-image.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
ctl=""
cache=${XDG_CACHE_HOME:-$HOME/.cache}/rebound/docker
keep_image=0
while [[ $# -gt 0 ]]; do
  case $1 in
    --root) root=$(cd "$2" && pwd); shift 2 ;;
    --ctl) ctl=$2; shift 2 ;;
    --cache) cache=$2; shift 2 ;;
    --keep-image) keep_image=1; shift ;;
    *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
  esac
done
[[ -x $ctl ]] || { echo "FAIL: --ctl: reboundctl from the build tree is required ('$ctl')" >&2; exit 2; }

skip() { echo "SKIP: $*" >&2; exit 77; }
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
ok() { echo "ok: $*"; }
t0=$(date +%s)
step_start=$t0
step() {  # step NAME: prints the time the previous step took
  local now
  now=$(date +%s)
  echo "== $1 (+$((now - step_start)) s, $((now - t0)) s in all)"
  step_start=$now
}

work=$(mktemp -d)
daemon_pid=""
containers=()
image=rebound:check-$$
cleanup() {
  local c
  set +e
  for c in "${containers[@]}"; do docker rm -f "$c" >/dev/null 2>&1; done
  if [[ $keep_image -eq 0 ]]; then docker rmi "$image" >/dev/null 2>&1; fi
  if [[ -n $daemon_pid ]]; then
    kill -TERM "$daemon_pid" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$daemon_pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$daemon_pid" 2>/dev/null && kill -KILL "$daemon_pid"
  fi
  # dockerd leaves its namespace mounts under the exec root.
  grep -o " $work/[^ ]*" /proc/mounts | sort -r | while read -r m; do umount "$m"; done
  rm -rf "$work"
}
trap cleanup EXIT

# ---- 1. a daemon ----
step "docker daemon"
command -v docker >/dev/null || skip "no docker client (Debian: apt-get install docker.io)"
if [[ -n ${DOCKER_HOST:-} ]] && docker version >/dev/null 2>&1; then
  ok "using the daemon at $DOCKER_HOST"
else
  command -v dockerd >/dev/null || skip "no dockerd and no reachable DOCKER_HOST (Debian: apt-get install docker.io)"
  [[ $(id -u) -eq 0 ]] || skip "starting a private dockerd needs root, and no DOCKER_HOST answers"
  mkdir -p "$cache"
  # A short socket path (unix sockets are limited to ~100 bytes); the data root in the cache.
  sock=$work/docker.sock
  dockerd --data-root "$cache/data" --exec-root "$work/exec" --pidfile "$work/dockerd.pid" \
    -H "unix://$sock" --ip 127.0.0.1 >"$work/dockerd.log" 2>&1 &
  daemon_pid=$!
  export DOCKER_HOST=unix://$sock
  for _ in $(seq 1 150); do
    docker version >/dev/null 2>&1 && break
    kill -0 "$daemon_pid" 2>/dev/null || break
    sleep 0.2
  done
  if ! docker version >/dev/null 2>&1; then
    echo "dockerd did not start; its log ends with:" >&2
    tail -n 15 "$work/dockerd.log" >&2
    skip "no Docker daemon can be started here (see the log above)"
  fi
  ok "private dockerd (PID $daemon_pid) on $sock, data in $cache/data"
fi

# ---- 2. base images ----
step "base images"
missing=()
for base in debian:bookworm-slim debian:bookworm; do
  docker image inspect "$base" >/dev/null 2>&1 || missing+=("$base")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  command -v mmdebstrap >/dev/null || skip "no ${missing[*]} image and no mmdebstrap to make one (apt-get install mmdebstrap)"
  sources=()
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [[ -s $f ]] && sources+=("$f")
  done
  [[ ${#sources[@]} -gt 0 ]] || skip "no apt sources in /etc/apt for mmdebstrap"
  echo "mmdebstrap --variant=minbase bookworm from ${sources[*]} | docker import (${missing[*]})"
  if ! mmdebstrap --quiet --variant=minbase bookworm - "${sources[@]}" 2>"$work/mmdebstrap.log" \
      | docker import - "${missing[0]}" >/dev/null; then
    tail -n 15 "$work/mmdebstrap.log" >&2
    fail "could not make ${missing[0]} with mmdebstrap"
    exit 1
  fi
  for base in "${missing[@]:1}"; do docker tag "${missing[0]}" "$base"; done
  ok "imported ${missing[*]} ($(docker image inspect --format '{{.Size}}' "${missing[0]}" | numfmt --to=si)B)"
else
  ok "debian:bookworm-slim and debian:bookworm are present"
fi

# ---- 3. build ----
step "docker build"
revision=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
# Host networking for the build: apt-get in the build stage reaches the mirror as this machine
# does, whatever the daemon's bridge can do.
if ! docker build --network host -t "$image" --build-arg REVISION="$revision" "$root" \
    >"$work/build.log" 2>&1; then
  tail -n 30 "$work/build.log" >&2
  fail "docker build failed (last lines above)"
  exit 1
fi
ok "built $image with REVISION=$revision ($(docker image inspect --format '{{.Size}}' "$image" | numfmt --to=si)B)"

# ---- 4. run ----
step "docker run"
# wait_health TARGET [ARGS...]: reboundctl health until SERVING, for at most 60 s.
wait_health() {
  local target=$1 out=""
  shift
  for _ in $(seq 1 120); do
    if out=$("$ctl" --target "$target" --timeout 2s health "$@" 2>&1); then
      echo "$out"
      return 0
    fi
    sleep 0.5
  done
  echo "$out"
  return 1
}
# published CONTAINER PORT: the host port of a container port published on 127.0.0.1.
published() { docker port "$1" "$2/tcp" | sed -n 's/^127\.0\.0\.1:\([0-9]*\)$/\1/p' | head -n1; }

data=$work/data-volume
cid=$(docker run -d -p 127.0.0.1::50051 -p 127.0.0.1::9464 "$image")
containers+=("$cid")
grpc_port=$(published "$cid" 50051)
metrics_port=$(published "$cid" 9464)
[[ -n $grpc_port && -n $metrics_port ]] || { fail "ports not published on 127.0.0.1: $(docker port "$cid")"; exit 1; }
echo "container ${cid:0:12}: gRPC on 127.0.0.1:$grpc_port, metrics on 127.0.0.1:$metrics_port"

if out=$(wait_health "127.0.0.1:$grpc_port"); then ok "reboundctl health through the published port: $out"
else fail "reboundctl health never said SERVING: $out"; docker logs "$cid" 2>&1 | tail -n 20 >&2; fi
if out=$("$ctl" --target "127.0.0.1:$grpc_port" health --service rebound.v1.Rebound 2>&1); then
  ok "reboundctl health --service rebound.v1.Rebound: $out"
else fail "health of rebound.v1.Rebound: $out"; fi

user=$(docker image inspect --format '{{.Config.User}}' "$image")
if [[ $user == 10001:10001 ]]; then ok "image USER $user"; else fail "image USER is '$user', not 10001:10001"; fi
uids=$(docker top "$cid" -o pid,uid,comm | awk 'NR > 1 && $3 == "rebound-server" { print $2 }')
if [[ $uids == 10001 ]]; then ok "rebound-server runs as uid $uids"; else fail "rebound-server runs as uid '$uids', not 10001"; fi

want="0.1.0 (revision $revision)"
for bin in rebound-server reboundctl; do
  v=$(docker run --rm --entrypoint "/usr/local/bin/$bin" "$image" --version)
  if [[ $v == "$bin $want" ]]; then ok "$bin --version: $v"; else fail "$bin --version says '$v', want '$bin $want'"; fi
done
if command -v curl >/dev/null; then
  info=$(curl -fsS "http://127.0.0.1:$metrics_port/metrics" | grep '^rebound_build_info' || true)
  if [[ $info == *"revision=\"$revision\""* ]]; then ok "scraped: $info"; else fail "rebound_build_info is '$info', want revision=\"$revision\""; fi
else
  fail "curl not found: cannot scrape rebound_build_info"
fi

health=""
for _ in $(seq 1 60); do  # the first probe runs one interval (10 s) after the start
  health=$(docker inspect --format '{{.State.Health.Status}}' "$cid")
  [[ $health == healthy || $health == unhealthy ]] && break
  sleep 1
done
if [[ $health == healthy ]]; then ok "Docker HEALTHCHECK: $health"; else fail "Docker HEALTHCHECK: '$health': $(docker inspect --format '{{json .State.Health}}' "$cid")"; fi

step "docker stop (SIGTERM)"
docker stop -t 30 "$cid" >/dev/null
code=$(docker inspect --format '{{.State.ExitCode}}' "$cid")
if [[ $code == 0 ]]; then ok "SIGTERM: exit code $code"; else fail "after docker stop the exit code is $code"; fi
if docker logs "$cid" 2>&1 | grep -q '"server_stopped"'; then ok "logged server_stopped"; else fail "no server_stopped in the log"; fi

step "bind mounts"
if [[ $(id -u) -ne 0 ]]; then
  echo "not root: the bind-mount checks (a root-owned directory, then chown 10001) are skipped"
else
mkdir -p "$data"
chown 0:0 "$data"
chmod 0755 "$data"
code=0
out=$(docker run --rm -v "$data:/var/lib/rebound" "$image" 2>&1) || code=$?
if [[ $code == 1 && $out == *"writable by uid 10001"* && $out == *"chown 10001:10001 /var/lib/rebound"* ]]; then
  ok "root-owned bind mount: exit 1, $(grep -o 'cannot open lock file.*' <<<"$out")"
else
  fail "root-owned bind mount: exit $code, output: $out"
fi
chown 10001:10001 "$data"
cid=$(docker run -d -p 127.0.0.1::50051 -v "$data:/var/lib/rebound" "$image")
containers+=("$cid")
if out=$(wait_health "127.0.0.1:$(published "$cid" 50051)"); then
  ok "after chown 10001:10001 the bind mount serves: $out; files: $(cd "$data" && echo *)"
else fail "chowned bind mount: $out"; docker logs "$cid" 2>&1 | tail -n 20 >&2; fi
docker stop -t 30 "$cid" >/dev/null
fi

step "done"
if [[ $failures -gt 0 ]]; then
  echo "$failures check(s) failed" >&2
  exit 1
fi
echo "all image checks passed in $(($(date +%s) - t0)) s"
