# Helpers shared by the deploy checks (sourced by check_deploy.sh, check_docker.sh and
# check_kubernetes.sh).

# need TOOL PACKAGE: fail (exit 1) when TOOL is not on PATH.
need() {
  if ! command -v "$1" >/dev/null 2>&1; then
    echo "FAIL: '$1' not found; install the Debian package '$2' (scripts/install-deps.sh does)" >&2
    exit 1
  fi
}

# report NAME PROBLEMS: print the problems (one a line) and fail when there are any.
report() {
  if [[ -n $2 ]]; then
    echo "FAIL: $1:" >&2
    sed 's/^/  /' <<<"$2" >&2
    return 1
  fi
  echo "ok: $1"
}
