#!/usr/bin/env bash
# The README's promise, checked for real: both of its commands on a minimal Debian 12 root with
# nothing installed but what they install themselves.
#
#   scripts/check-fresh-debian.sh [--rev REV] [--keep] [--workdir DIR]
#
# 1. `mmdebstrap --variant=apt bookworm ROOT` with this machine's apt sources (every enabled
#    /etc/apt/sources.list and sources.list.d/*.list|*.sources file): Essential packages and apt,
#    nothing else (no git, no sudo, no curl, no compiler).
# 2. Mounts proc, sys, dev, dev/pts and a tmpfs on dev/shm; /usr/sbin/policy-rc.d exits 101 (no
#    daemon starts, as in any chroot or container).
# 3. As the README says: `apt-get install git`, then `git clone` of this repository (REV,
#    default HEAD; a bare copy is made outside the root with this machine's git and cloned from
#    inside with the root's own git).
# 4. `scripts/run.sh` exactly as written, in the background: waits (up to 60 min) for it to
#    install, build and serve, checks that it serves (gRPC port 127.0.0.1:50051 open, an RPC
#    answered by reboundctl, /metrics on 127.0.0.1:9464), then stops it by its PID with SIGTERM
#    and expects exit 0.
# 5. `scripts/test.sh` exactly as written.
# 6. The README's quick tour pasted into a shell in that clone: its build block, then its tour
#    block (tests/readme/run_tour.sh --print), under `bash -e -o pipefail`; fixed ports 50051,
#    9464 and 8080.
# 7. Prints a summary (pass/fail per command, durations, the ctest summary line, node and
#    kubectl versions in the root), unmounts everything (also on error or Ctrl-C) and removes
#    the root unless --keep (the logs stay in DIR/rebound-fresh-*/log). Exits 0 only if both
#    commands and the tour passed.
#
# Needs root, mmdebstrap and git on this machine, the package registry, and the ports 50051 and
# 9464 and 8080 free (the root shares this machine's network). 32 minutes measured on 2 busy cores: apt,
# a build without ccache and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
rev=HEAD
keep=0
workdir=${TMPDIR:-/var/tmp}
while [[ $# -gt 0 ]]; do
  case $1 in
    --rev) rev=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    --workdir) workdir=$2; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "check-fresh-debian: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
[[ $(id -u) -eq 0 ]] || { echo "check-fresh-debian: needs root (mmdebstrap, mount, chroot)" >&2; exit 2; }
for tool in mmdebstrap git chroot mount; do
  command -v "$tool" >/dev/null || { echo "check-fresh-debian: '$tool' not found" >&2; exit 2; }
done
sha=$(git -C "$repo" rev-parse --verify "$rev^{commit}")
for port in 50051 9464 8080; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "check-fresh-debian: 127.0.0.1:$port is in use; scripts/run.sh needs it" >&2
    exit 2
  fi
done

work=$(mktemp -d "$workdir/rebound-fresh-XXXXXX")
root=$work/root
log=$work/log
mkdir -p "$log"
server_pid=""
mounted=()

elapsed() { local s=$(($(date +%s) - $1)); printf '%dm%02ds' $((s / 60)) $((s % 60)); }
say() { echo "check-fresh-debian: $*"; }

cleanup() {
  local status=$?
  if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$server_pid" 2>/dev/null || true
  fi
  local i
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
    umount "${mounted[i]}" 2>/dev/null || umount -l "${mounted[i]}" 2>/dev/null || true
  done
  if grep -qF " $root/" /proc/self/mounts || grep -qF " $root " /proc/self/mounts; then
    echo "check-fresh-debian: something is still mounted under $root; not removing it" >&2
  elif [[ $keep -eq 0 ]]; then
    rm -rf "$root"
  else
    say "kept the root $root"
  fi
  say "logs in $log"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# This machine's local CA certificates (/usr/local/share/ca-certificates: a TLS-inspecting
# proxy's, say) are trusted in the root too: copied in before ca-certificates is installed, whose
# update-ca-certificates adds them to /etc/ssl/certs/ca-certificates.crt, and Node.js (npm ci of
# the deploy checks), which reads only its own list, is pointed at that bundle. Without local
# certificates nothing is added: the root sees the network as a user's machine does.
root_env=(HOME=/root LANG=C.UTF-8 TERM=dumb PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin)
local_cas=(/usr/local/share/ca-certificates/*.crt)
[[ -e ${local_cas[0]} ]] || local_cas=()
[[ ${#local_cas[@]} -eq 0 ]] || root_env+=(NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt)

# In the root, as root, with a clean environment (no other variable of this machine leaks in).
in_root() {
  chroot "$root" /usr/bin/env -i "${root_env[@]}" /bin/bash -c "$1"
}

# ---- 1. the root ----
sources=()
[[ -s /etc/apt/sources.list ]] && sources+=(/etc/apt/sources.list)
for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
  [[ -s $f ]] && sources+=("$f")
done
[[ ${#sources[@]} -gt 0 ]] || { echo "check-fresh-debian: no apt sources in /etc/apt" >&2; exit 2; }
t0=$(date +%s)
say "mmdebstrap --variant=apt bookworm (sources: ${sources[*]})"
if ! mmdebstrap --variant=apt bookworm "$root" "${sources[@]}" >"$log/mmdebstrap.log" 2>&1; then
  tail -n 20 "$log/mmdebstrap.log" >&2
  exit 1
fi
t_root=$(elapsed "$t0")

# ---- 2. mounts, no daemons ----
mount_in() {  # mount_in TARGET MOUNT-ARGS...
  local target=$root$1
  shift
  mkdir -p "$target"
  mount "$@" "$target"
  mounted+=("$target")
}
mount_in /proc -t proc proc
mount_in /sys -t sysfs sysfs
mount_in /dev --bind /dev
mount_in /dev/pts --bind /dev/pts
mount_in /dev/shm -t tmpfs -o mode=1777 tmpfs
[[ -s $root/etc/resolv.conf ]] || cp /etc/resolv.conf "$root/etc/resolv.conf"
printf '#!/bin/sh\n# check-fresh-debian.sh: no daemon starts in this root\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 755 "$root/usr/sbin/policy-rc.d"
for tool in git sudo curl gcc node kubectl; do
  if in_root "command -v $tool" >/dev/null 2>&1; then
    echo "check-fresh-debian: the new root already has $tool; it is not minimal" >&2
    exit 1
  fi
done

# ---- 3. git, clone ----
if [[ ${#local_cas[@]} -gt 0 ]]; then
  mkdir -p "$root/usr/local/share/ca-certificates"
  cp "${local_cas[@]}" "$root/usr/local/share/ca-certificates/"
  say "trusting this machine's local CA certificates in the root: ${local_cas[*]##*/}"
fi
git clone -q --bare --no-local "$repo" "$root/srv/rebound.git"
git -C "$root/srv/rebound.git" update-ref refs/heads/check-fresh-debian "$sha"
if ! in_root "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq git ca-certificates \
      && git clone -q /srv/rebound.git /root/rebound && git -C /root/rebound checkout -q --detach $sha" \
    >"$log/clone.log" 2>&1; then
  tail -n 20 "$log/clone.log" >&2
  exit 1
fi
say "cloned $(git -C "$repo" log -1 --format='%h %s' "$sha")"

# ---- 4. scripts/run.sh ----
t0=$(date +%s)
run_result=FAIL run_note=""
# chroot, env and bash exec into run.sh, which execs rebound-server: $! is the server's PID.
chroot "$root" /usr/bin/env -i "${root_env[@]}" \
  /bin/bash -c 'cd /root/rebound && exec scripts/run.sh' >"$log/run.log" 2>&1 &
server_pid=$!
say "scripts/run.sh started (PID $server_pid); waiting for it to install, build and serve"
serving=0
for _ in $(seq 1 3600); do
  kill -0 "$server_pid" 2>/dev/null || break
  if (exec 3<>/dev/tcp/127.0.0.1/50051) 2>/dev/null; then serving=1; break; fi
  sleep 1
done
if [[ $serving -eq 0 ]]; then
  run_note="did not serve on 127.0.0.1:50051: $(tail -n 5 "$log/run.log" | tr '\n' ' ')"
else
  t_serve=$(elapsed "$t0")
  ctl=/root/rebound/build/client/reboundctl
  checks_ok=1
  # The health RPC when reboundctl has it, and a real API call either way.
  if in_root "$ctl --help" 2>/dev/null | grep -qE '^ +health '; then
    in_root "$ctl health" >"$log/health.out" 2>&1 || { checks_ok=0; run_note+="reboundctl health: $(cat "$log/health.out") "; }
  fi
  in_root "$ctl list" >"$log/list.out" 2>&1 || { checks_ok=0; run_note+="reboundctl list: $(cat "$log/list.out") "; }
  in_root "curl -sf http://127.0.0.1:9464/metrics" >"$log/metrics.out" 2>&1 &&
    grep -q '^rebound_build_info' "$log/metrics.out" ||
    { checks_ok=0; run_note+="/metrics on 127.0.0.1:9464 has no rebound_build_info "; }
  kill -TERM "$server_pid"
  status=0
  wait "$server_pid" || status=$?
  server_pid=""
  if [[ $status -ne 0 ]]; then
    run_note+="exit status $status after SIGTERM"
  elif [[ $checks_ok -eq 1 ]]; then
    run_result=PASS
    run_note="served after $t_serve (reboundctl answered, /metrics up); SIGTERM: exit 0"
  fi
fi
t_run=$(elapsed "$t0")
if (exec 3<>/dev/tcp/127.0.0.1/9090) 2>/dev/null; then prom="something listens on 127.0.0.1:9090"
else prom="nothing listens on :9090 (no Prometheus server was started)"; fi

# ---- 5. scripts/test.sh ----
t0=$(date +%s)
test_result=FAIL
if in_root 'cd /root/rebound && scripts/test.sh' >"$log/test.log" 2>&1; then test_result=PASS; fi
t_test=$(elapsed "$t0")
ctest_line=$(grep -E '^[0-9]+% tests passed' "$log/test.log" | tail -n 1 || true)
ctest_time=$(grep -E '^Total Test time' "$log/test.log" | tail -n 1 || true)

# ---- 6. the quick tour, pasted ----
t0=$(date +%s)
tour_result=FAIL
build_block=$(awk '/^## A quick tour/ { armed = 1 } armed && /^```sh$/ { inblock = 1; next }
                   inblock && /^```$/ { exit } inblock { print }' "$root/root/rebound/README.md")
tour_block=$(bash "$root/root/rebound/tests/readme/run_tour.sh" --root "$root/root/rebound" --print)
printf '%s\n%s\n' "$build_block" "$tour_block" >"$root/root/tour.sh"
if in_root 'cd /root/rebound && bash -e -o pipefail -x /root/tour.sh' >"$log/tour.log" 2>&1; then
  tour_result=PASS
fi
t_tour=$(elapsed "$t0")

# ---- 7. summary ----
versions=$(in_root 'echo "node $(node --version), npm $(npm --version), $(kubectl version --client --short 2>/dev/null || kubectl version --client | head -n 1)"' 2>&1 || true)
echo
say "root: mmdebstrap --variant=apt bookworm in $t_root; revision $(git -C "$repo" rev-parse --short "$sha")"
say "root tools after install-deps: $versions; $prom"
say "scripts/run.sh   $run_result in $t_run: $run_note"
say "scripts/test.sh  $test_result in $t_test: ${ctest_line:-no ctest summary line} (${ctest_time:-})"
say "README tour      $tour_result in $t_tour ($(grep -c '^+ [^+]' "$log/tour.log") commands traced; log $log/tour.log)"
if [[ $test_result != PASS ]]; then
  grep -E '^\s+[0-9]+ - .*\((Failed|Timeout|Not Run|Skipped)|\*\*\*(Failed|Timeout)|Not Run' "$log/test.log" | tail -n 30 || true
  tail -n 30 "$log/test.log"
fi
[[ $run_result != PASS ]] && tail -n 30 "$log/run.log"
[[ $tour_result != PASS ]] && tail -n 30 "$log/tour.log"
[[ $run_result == PASS && $test_result == PASS && $tour_result == PASS ]]
