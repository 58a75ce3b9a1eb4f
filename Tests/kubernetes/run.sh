#!/usr/bin/env bash
# `cairn apiserver --orchestrator kubernetes` against a stand-in of the Kubernetes API server
# (Tests/kubernetes/standin_apiserver.py: no cluster and no kube-apiserver exist here). Checks the
# objects the apiserver applies, reads back (by watch), writes as status, and deletes; CairnPools
# and CairnVolumes written by hand; a restart with an empty state. Everything on 127.0.0.1 in a
# scratch directory; what it starts is stopped by pid.
#
# Environment: CAIRN_BIN (default: the newer build), KEEP=1 keeps the scratch directory.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../../scripts/lib.sh
source "$ROOT/scripts/lib.sh"
LOG_TAG=kubernetes
"$ROOT/scripts/venv.sh" "$ROOT/Tests/deploy/requirements.txt"
export CAIRN_BIN
CAIRN_BIN=$(cairn_bin)
exec "$ROOT/.venv/bin/python" "$ROOT/Tests/kubernetes/orchestrator_test.py" "$@"
