#!/usr/bin/env bash
# Runs vmnic's test suite.
#
# As root, the whole run happens inside a throwaway network namespace
# (`unshare --net`): the CNI bridges and gateways the tests make live there and
# vanish with it, so nothing touches this machine's real network. The named
# per-VM namespaces the tests create carry a unique prefix per run and are
# removed by the tests themselves. Without root, the root-only tests skip and
# say why.
set -euo pipefail
cd "$(dirname "$0")/.."

# Deno: $DENO, else one on PATH, else the one npm installed (package.json).
deno=${DENO:-$(command -v deno || echo "$PWD/node_modules/deno/deno")}
perms=(--allow-ffi --allow-read --allow-write --allow-run --allow-env --allow-sys)

if [ "$(id -u)" = 0 ] && command -v unshare >/dev/null; then
  exec unshare --net -- "$deno" test "${perms[@]}" "$@"
fi
exec "$deno" test "${perms[@]}" "$@"
