#!/usr/bin/env bash
# Integration tests through the dev network, with Debian's pytest and python3-msgpack (which import
# only under /usr/bin/python3). Usage: tests/run-integration.sh BUILD_DIR... [-- pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
builds=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do builds+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
[ ${#builds[@]} -gt 0 ] || builds=(build)
export ZH_TEST_BUILDS="${builds[*]}"
export PYTHONDONTWRITEBYTECODE=1
exec /usr/bin/python3 -m pytest -p no:cacheprovider -q tests/integration "$@"
