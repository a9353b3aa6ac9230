#!/usr/bin/env bash
# Runs the README's quick tour as written, so it cannot rot.
#
#   run_tour.sh [--root SRC] --build BUILD_DIR [--print]
#
# The tour is the ```sh block that follows the line `<!-- tour: ... -->` in README.md; the
# block before it (install and build) is not run here: BUILD_DIR is what it builds. The tour runs
# under `bash -e -o pipefail` (a command that fails fails the test) in a scratch directory that
# holds a copy of config/ and `build` -> BUILD_DIR, as a fresh clone does after scripts/build.sh.
# It runs in its own network namespace (lo only: the tour's fixed ports collide with nothing, and
# no traffic leaves the machine) and PID namespace (whatever it started dies with it). Exit 77
# (skipped) only when no namespace can be made (not root and no unprivileged user namespaces).
# --print: print the extracted tour and exit.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
build="" print=0 inside=0
while [[ $# -gt 0 ]]; do
  case $1 in
    --root) root=$(cd "$2" && pwd); shift 2 ;;
    --build) build=$(cd "$2" && pwd); shift 2 ;;
    --print) print=1; shift ;;
    --inside) inside=1; shift ;;
    *) echo "run_tour: unknown argument '$1'" >&2; exit 2 ;;
  esac
done

# The tour block of README.md.
tour=$(awk '
  /^<!-- tour:/ { armed = 1; next }
  armed && /^```sh$/ { inblock = 1; next }
  inblock && /^```$/ { exit }
  inblock { print }' "$root/README.md")
if [[ -z $tour ]]; then
  echo "FAIL: README.md has no \`\`\`sh block after a '<!-- tour: ... -->' line" >&2
  exit 1
fi
if [[ $print -eq 1 ]]; then
  printf '%s\n' "$tour"
  exit 0
fi
[[ -n $build ]] || { echo "run_tour: --build BUILD_DIR is required" >&2; exit 2; }
for bin in server/rebound-server client/reboundctl tools/fake-lms/fake-lms; do
  [[ -x $build/$bin ]] || { echo "FAIL: $build/$bin is not built" >&2; exit 1; }
done
command -v jq >/dev/null || { echo "FAIL: 'jq' not found; install the Debian package 'jq'" >&2; exit 1; }

if [[ $inside -eq 0 ]]; then
  command -v ip >/dev/null || { echo "FAIL: 'ip' not found; install the Debian package 'iproute2'" >&2; exit 1; }
  ns=(unshare --net --pid --fork)
  [[ $(id -u) -eq 0 ]] || ns+=(--map-root-user)
  if ! "${ns[@]}" true 2>/dev/null; then
    echo "SKIP: cannot create a network namespace (${ns[*]}); run as root or enable user namespaces" >&2
    exit 77
  fi
  exec "${ns[@]}" bash "$0" --inside --root "$root" --build "$build"
fi

ip link set lo up
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/clone"
cp -r "$root/config" "$work/clone/config"
ln -s "$build" "$work/clone/build"
printf '%s\n' "$tour" >"$work/tour.sh"
echo "== the tour ($(wc -l <"$work/tour.sh") lines of README.md), run in $work/clone"
status=0
(cd "$work/clone" && timeout 90 bash -e -o pipefail -x "$work/tour.sh") >"$work/tour.log" 2>&1 || status=$?
cat "$work/tour.log"
if [[ $status -ne 0 ]]; then
  echo "FAIL: the tour stopped with status $status at the last command above (+ lines are the commands)" >&2
  exit 1
fi
# What the tour says happens, happened.
problems=""
grep -q 'SUCCEEDED' "$work/tour.log" || problems+="no job SUCCEEDED"$'\n'
grep -q 'CANCELLED' "$work/tour.log" || problems+="no job was CANCELLED"$'\n'
grep -qE '3 ok, 0 deduplicated, 0 rejected' "$work/tour.log" || problems+="the JSONL batch did not submit 3 jobs"$'\n'
[[ -s $work/clone/jobs.jsonl ]] || problems+="the tour made no jobs.jsonl"$'\n'
if [[ -n $problems ]]; then
  printf 'FAIL: %s' "$problems" >&2
  exit 1
fi
echo "ok: every command of the README's tour succeeded"
