# Sourced by check_docker.sh and check_kubernetes.sh: the npm validators of package.json,
# installed with `npm ci` from the committed package-lock.json (never resolved afresh) into a
# tools directory outside the source tree, once per lock file.
#
#   npm_tools DIR   -> sets npm_modules=DIR/node_modules, installing first when needed
#
# Needs node and npm (the machine's Node.js; Debian 12's nodejs 18 and npm 9 are enough); a
# missing one fails the check. After installing, every package of the lock must declare that it
# runs on Debian 12's Node.js (engines.node satisfied by $debian_node), whatever Node this
# machine has: a pin that wants Node 20 or 22 fails here, not only on a fresh Debian.

debian_node=18.13.0  # bookworm's oldest nodejs (12.0 shipped 18.13; the point releases 18.19, 18.20)

npm_tools() {
  local dir=$1 deploy_dir
  deploy_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
  local tool
  for tool in node npm; do
    if ! command -v "$tool" >/dev/null 2>&1; then
      echo "FAIL: '$tool' not found: the deploy checks need Node.js and npm for their validators" >&2
      return 1
    fi
  done
  mkdir -p "$dir" || return 1
  (
    # One installer at a time (ctest -j runs several checks at once).
    flock 9 || exit 1
    if [[ -d $dir/node_modules ]] && cmp -s "$deploy_dir/package-lock.json" "$dir/package-lock.json"; then
      exit 0
    fi
    rm -rf "$dir/node_modules"
    cp "$deploy_dir/package.json" "$deploy_dir/package-lock.json" "$dir/" || exit 1
    echo "installing the npm validators into $dir (npm ci)"
    if ! (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >"$dir/npm-ci.log" 2>&1); then
      echo "FAIL: npm ci in $dir failed:" >&2
      sed 's/^/  /' "$dir/npm-ci.log" >&2
      rm -f "$dir/package-lock.json"
      exit 1
    fi
    local engines
    if ! engines=$(cd "$dir" && node -e '
        const semver = require("semver");
        const lock = require("./package-lock.json");
        for (const [path, p] of Object.entries(lock.packages)) {
          const want = p.engines && p.engines.node;
          if (path && want && !semver.satisfies(process.argv[1], want))
            console.log(`${path.replace(/^node_modules\//, "")}@${p.version} wants Node ${want}`);
        }' "$debian_node" 2>&1) || [[ -n $engines ]]; then
      echo "FAIL: tests/deploy/package-lock.json pins packages that do not run on Debian 12's Node.js $debian_node:" >&2
      sed 's/^/  /' <<<"$engines" >&2
      rm -f "$dir/package-lock.json"
      exit 1
    fi
  ) 9>"$dir.lock" || return 1
  npm_modules=$dir/node_modules
}
