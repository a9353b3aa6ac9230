# Helpers shared by the deploy checks' self-tests (sourced by check_deploy_selftest.sh and
# check_image_selftest.sh). The caller defines `digest` (a checksum of the files its mutations
# touch, run in the scratch tree).

passed=0
failed=0
fail() {
  echo "FAIL: $*" >&2
  failed=$((failed + 1))
}

# mutation_fails NAME TREE CHECK EXPECTED CMD_ARRAY MUTATION...: in TREE (a fresh copy the caller
# made), apply MUTATION (a command, run in TREE); then `CMD --root TREE CHECK`, CMD being the
# array named CMD_ARRAY, must fail and print EXPECTED. A mutation that fails or changes nothing
# fails the self-test too: it would prove nothing.
mutation_fails() {
  local name=$1 tree=$2 check_name=$3 expected=$4
  local -n mutation_check_cmd=$5
  shift 5
  local output before after
  before=$(cd "$tree" && digest)
  if ! (cd "$tree" && "$@"); then
    fail "$name: the mutation '$*' failed"
    return
  fi
  after=$(cd "$tree" && digest)
  if [[ $before == "$after" ]]; then
    fail "$name: the mutation '$*' changed nothing; update this self-test"
    return
  fi
  if output=$("${mutation_check_cmd[@]}" --root "$tree" "$check_name" 2>&1); then
    fail "$name: check '$check_name' passed on a broken copy"
    return
  fi
  if ! grep -qF -- "$expected" <<<"$output"; then
    fail "$name: check '$check_name' failed without saying '$expected'; it said:"
    sed 's/^/    /' <<<"$output" >&2
    return
  fi
  echo "ok: $name ($check_name fails)"
  passed=$((passed + 1))
}
