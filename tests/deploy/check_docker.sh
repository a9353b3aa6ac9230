#!/usr/bin/env bash
# Checks of the root Dockerfile; tests/deploy/CMakeLists.txt registers one ctest test per check
# (ctest -L deploy).
#
#   check_docker.sh [--root DIR] [--binary BIN]... [--tools DIR] CHECK...
#
#   lint            dockerfile-utils (npm) reports nothing, and the rules below hold: the build
#                   stage is debian:bookworm, the last stage debian:bookworm-slim; every
#                   apt-get install has --no-install-recommends and removes /var/lib/apt/lists
#                   in the same RUN; the last USER is numeric and not root; ENTRYPOINT is in exec
#                   form; EXPOSE 50051 and 9464; VOLUME /var/lib/rebound; no ADD; a
#                   HEALTHCHECK in exec form running `reboundctl ... health`
#   ldd             every shared library `ldd BIN` resolves comes from a Debian package
#                   (dpkg -S) that the runtime stage installs, or that debian:bookworm-slim has
#                   (base_packages below); and every lib* package installed there is needed by a BIN
#   default-config  the sed expressions of the Dockerfile turn config/rebound.yaml into a config
#                   listening on 0.0.0.0 with the database on the VOLUME, which
#                   `BIN --check-config` (the first BIN, rebound-server) accepts
#   all             all of the above
#
# --binary: rebound-server first, then reboundctl (CMake passes both). --tools: where `npm ci`
# installs the validators (default: ~/.cache/rebound/deploy-npm). --root DIR checks another
# tree (the self-test runs it on broken copies).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"
root=$(cd "$here/../.." && pwd)
binaries=()
tools=${XDG_CACHE_HOME:-$HOME/.cache}/rebound/deploy-npm
while [[ $# -gt 0 ]]; do
  case $1 in
    --root) root=$(cd "$2" && pwd); shift 2 ;;
    --binary) binaries+=("$2"); shift 2 ;;
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

dockerfile=$root/Dockerfile
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# Packages of debian:bookworm-slim itself (Essential or required by dpkg and apt) whose
# libraries the binaries load; the Dockerfile need not list them.
base_packages=(libc6 libgcc-s1 libstdc++6 zlib1g libzstd1)


need_binaries() {
  if [[ ${#binaries[@]} -eq 0 ]]; then
    echo "FAIL: no --binary given (CMake passes rebound-server and reboundctl)" >&2
    return 1
  fi
  local bin
  for bin in "${binaries[@]}"; do
    [[ -x $bin ]] || { echo "FAIL: $bin is not built (build rebound-server and reboundctl first)" >&2; return 1; }
  done
}

# The Dockerfile with continuation lines joined and comments dropped, one instruction a line,
# each prefixed with its stage number: "STAGE<TAB>INSTRUCTION".
instructions() {
  [[ -f $dockerfile ]] || { echo "FAIL: $dockerfile is missing" >&2; return 1; }
  awk '
    /^[[:space:]]*#/ && !cont { next }
    {
      line = $0
      if (sub(/\\[[:space:]]*$/, "", line)) { buf = buf line " "; cont = 1; next }
      buf = buf line; cont = 0
      if (buf ~ /^[[:space:]]*$/) { buf = ""; next }
      sub(/^[[:space:]]+/, "", buf)
      if (toupper(buf) ~ /^FROM[[:space:]]/) stage++
      print stage "\t" buf
      buf = ""
    }' "$dockerfile"
}

# The package names of the last stage's `apt-get install` commands, one a line.
runtime_packages() {
  local last
  last=$(instructions | awk -F'\t' 'END { print $1 }') || return 1
  instructions | awk -F'\t' -v s="$last" '$1 == s && $2 ~ /^RUN / { print $2 }' \
    | grep -oE 'apt-get install[^&;|]*' | sed 's/^apt-get install//' | tr -s ' ' '\n' \
    | grep -vE '^(-|$)' | sort -u
}

check_lint() {
  npm_tools "$tools" || return 1
  local out problems=""
  # dockerfile-utils: syntax and instruction errors and warnings; any diagnostic fails.
  out=$(node "$npm_modules/dockerfile-utils/bin/dockerfile-utils" lint --json "$dockerfile" 2>&1) || true
  if ! jq -e 'type == "array"' >/dev/null 2>&1 <<<"$out"; then
    problems+="dockerfile-utils: $out"$'\n'
  else
    problems+=$(jq -r '.[] | "dockerfile-utils: line \(.range.start.line + 1): \(.severity): \(.message)"' <<<"$out")
    [[ -n $problems ]] && problems+=$'\n'
  fi
  local ins
  ins=$(instructions) || return 1
  local froms last
  froms=$(awk -F'\t' '$2 ~ /^FROM / { print $1 "\t" $2 }' <<<"$ins")
  last=$(awk -F'\t' 'END { print $1 }' <<<"$ins")
  grep -qE '^1	FROM debian:bookworm( |$)' <<<"$froms" \
    || problems+="the build stage is not FROM debian:bookworm"$'\n'
  grep -qE "^$last	FROM debian:bookworm-slim( |\$)" <<<"$froms" \
    || problems+="the runtime (last) stage is not FROM debian:bookworm-slim"$'\n'
  grep -qE '^[0-9]+	FROM [^ ]*:latest' <<<"$froms" && problems+="a FROM uses the latest tag"$'\n'
  local run
  while IFS=$'\t' read -r stage run; do
    [[ $run == *"apt-get install"* ]] || continue
    [[ $run == *"--no-install-recommends"* || $stage != "$last" ]] \
      || problems+="stage $stage: apt-get install without --no-install-recommends"$'\n'
    [[ $run == *"rm -rf /var/lib/apt/lists"* ]] \
      || problems+="stage $stage: a RUN with apt-get install does not rm -rf /var/lib/apt/lists/*"$'\n'
  done < <(awk -F'\t' '$2 ~ /^RUN / { print }' <<<"$ins")
  local user
  user=$(awk -F'\t' -v s="$last" '$1 == s && $2 ~ /^USER / { u = $2 } END { sub(/^USER /, "", u); print u }' <<<"$ins")
  if [[ -z $user ]]; then
    problems+="the runtime stage sets no USER (it would run as root)"$'\n'
  elif ! [[ $user =~ ^[0-9]+(:[0-9]+)?$ ]] || [[ ${user%%:*} -eq 0 ]]; then
    problems+="USER '$user' is not a numeric non-root uid (Kubernetes' runAsNonRoot needs a number)"$'\n'
  fi
  local entry
  entry=$(awk -F'\t' -v s="$last" '$1 == s && $2 ~ /^ENTRYPOINT / { e = $2 } END { print e }' <<<"$ins")
  [[ $entry =~ ^ENTRYPOINT\ *\[ ]] \
    || problems+="ENTRYPOINT is not in exec form (SIGTERM would go to a shell, not the server): '$entry'"$'\n'
  local port
  for port in 50051 9464; do
    awk -F'\t' -v s="$last" '$1 == s && $2 ~ /^EXPOSE / { print $2 }' <<<"$ins" | grep -qw "$port" \
      || problems+="the runtime stage does not EXPOSE $port"$'\n'
  done
  awk -F'\t' -v s="$last" '$1 == s && $2 ~ /^VOLUME / { print $2 }' <<<"$ins" | grep -q '/var/lib/rebound' \
    || problems+="no VOLUME /var/lib/rebound for the database"$'\n'
  grep -qE '^[0-9]+	ADD ' <<<"$ins" && problems+="ADD used; COPY is explicit"$'\n'
  local health
  health=$(awk -F'\t' -v s="$last" '$1 == s && $2 ~ /^HEALTHCHECK / { h = $2 } END { print h }' <<<"$ins")
  [[ $health =~ CMD\ *\[\ *\"/usr/local/bin/reboundctl\".*\"health\"\ *\] ]] \
    || problems+="the runtime stage has no HEALTHCHECK CMD [\"/usr/local/bin/reboundctl\", ..., \"health\"] (exec form): '$health'"$'\n'
  report "Dockerfile lint" "${problems%$'\n'}"
}

# The Debian package that owns a library file (usr-merge aware).
owner() {
  local path=$1 real candidates p
  real=$(readlink -f "$path")
  candidates=("$path" "$real")
  for p in "$path" "$real"; do
    case $p in
      /usr/lib/*) candidates+=("${p#/usr}") ;;
      /lib/* | /lib64/*) candidates+=("/usr$p") ;;
    esac
  done
  for p in "${candidates[@]}"; do
    if out=$(dpkg -S "$p" 2>/dev/null); then
      head -n1 <<<"$out" | cut -d: -f1
      return 0
    fi
  done
  return 1
}

check_ldd() {
  need_binaries || return 1
  command -v dpkg >/dev/null || { echo "FAIL: dpkg not found (the check runs on Debian)" >&2; return 1; }
  local installed problems="" needed="" bin name path pkg
  installed=$(runtime_packages) || return 1
  if [[ -z $installed ]]; then
    echo "FAIL: the runtime stage of $dockerfile installs no package" >&2
    return 1
  fi
  for bin in "${binaries[@]}"; do
    ldd "$bin" >"$scratch/ldd" 2>&1 || { echo "FAIL: ldd $bin failed:" >&2; cat "$scratch/ldd" >&2; return 1; }
    while read -r name path; do
      if [[ $path == "not found" ]]; then
        problems+="$(basename "$bin"): $name is not found on this machine"$'\n'
        continue
      fi
      [[ $path == /* ]] || continue  # linux-vdso.so.1
      if ! pkg=$(owner "$path"); then
        problems+="$(basename "$bin"): $path belongs to no Debian package (built locally?)"$'\n'
        continue
      fi
      needed+="$pkg"$'\n'
      if printf '%s\n' "${base_packages[@]}" | grep -qxF "$pkg"; then continue; fi
      grep -qxF "$pkg" <<<"$installed" \
        || problems+="$(basename "$bin") needs $name (Debian package $pkg), which the runtime stage does not install"$'\n'
    done < <(awk '/=>/ { print $1, ($3 == "not" ? "not found" : $3); next } /^\t\// { print $1, $1 }' "$scratch/ldd")
  done
  for pkg in $(grep '^lib' <<<"$installed"); do
    grep -qxF "$pkg" <<<"$needed" \
      || problems+="the runtime stage installs $pkg, which no binary loads (remove it)"$'\n'
  done
  problems=$(sort -u <<<"${problems%$'\n'}" | sed '/^$/d')
  report "runtime packages cover ldd of ${binaries[*]##*/} ($(sort -u <<<"$needed" | sed '/^$/d' | wc -l) packages)" "$problems"
}

check_default_config() {
  need_binaries || return 1
  local run
  run=$(instructions | awk -F'\t' '$2 ~ /^RUN / && /config\/rebound\.yaml/ && /sed / { print $2 }') || return 1
  if [[ -z $run ]]; then
    echo "FAIL: no RUN of the Dockerfile runs sed on config/rebound.yaml" >&2
    return 1
  fi
  local -a exprs=()
  mapfile -t exprs < <(grep -oE -- "-e '[^']*'" <<<"$run" | sed -E "s/^-e '(.*)'$/\\1/")
  [[ ${#exprs[@]} -gt 0 ]] || { echo "FAIL: the sed RUN has no -e 'EXPR' arguments" >&2; return 1; }
  local problems="" e
  for e in "${exprs[@]}"; do
    sed -e "$e" "$root/config/rebound.yaml" | cmp -s - "$root/config/rebound.yaml" \
      && problems+="sed expression '$e' changes nothing in config/rebound.yaml (the sample changed?)"$'\n'
  done
  local args=()
  for e in "${exprs[@]}"; do args+=(-e "$e"); done
  sed "${args[@]}" "$root/config/rebound.yaml" >"$scratch/rebound.yaml"
  local grpc metrics path volume
  grpc=$(yq -r '.server.grpc_listen' "$scratch/rebound.yaml")
  metrics=$(yq -r '.server.metrics_listen' "$scratch/rebound.yaml")
  path=$(yq -r '.store.path' "$scratch/rebound.yaml")
  [[ $grpc == 0.0.0.0:50051 ]] || problems+="the image's grpc_listen is '$grpc', not 0.0.0.0:50051"$'\n'
  [[ $metrics == 0.0.0.0:9464 ]] || problems+="the image's metrics_listen is '$metrics', not 0.0.0.0:9464"$'\n'
  volume=$(instructions | awk -F'\t' '$2 ~ /^VOLUME / { print $2 }' | grep -oE '/[^" ]+' | head -n1)
  [[ -n $volume && $path == "$volume"/* ]] \
    || problems+="the image's store.path '$path' is not on the VOLUME '$volume'"$'\n'
  instructions | grep -qE 'COPY .*rebound\.yaml /etc/rebound/rebound\.yaml' \
    || problems+="no COPY of the generated config to /etc/rebound/rebound.yaml"$'\n'
  instructions | grep -qE '^[0-9]+	CMD \[.*"/etc/rebound/rebound\.yaml"' \
    || problems+="CMD does not pass --config /etc/rebound/rebound.yaml"$'\n'
  if ! "${binaries[0]}" --check-config "$scratch/rebound.yaml" >"$scratch/check.out" 2>&1; then
    problems+="rebound-server --check-config refuses the image's config: $(cat "$scratch/check.out")"$'\n'
  fi
  report "the image's default config" "${problems%$'\n'}"
}

checks=("$@")
if [[ ${#checks[@]} -eq 1 && ${checks[0]} == all ]]; then
  checks=(lint ldd default-config)
fi
failed=0
for check in "${checks[@]}"; do
  case $check in
    lint) check_lint || failed=1 ;;
    ldd) check_ldd || failed=1 ;;
    default-config) check_default_config || failed=1 ;;
    *)
      echo "unknown check '$check'" >&2
      exit 2
      ;;
  esac
done
exit "$failed"
