#!/usr/bin/env bash
# The CSI plugin against a live apiserver (local orchestrator) over its unix socket, with a Python
# gRPC client generated from Sources/CairnCSI/csi.proto: Identity and Controller as csi-sanity
# checks them, and the Node service for real with the userspace attach (qemu-storage-daemon, FUSE,
# a loop device; needs root). Everything runs on 127.0.0.1 in a scratch directory; what it starts
# is stopped by pid, and any mount or loop device left under the scratch directory is a failure.
#
# Environment: CAIRN_BIN (default: the newer build), KEEP=1 keeps the scratch directory.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../../scripts/lib.sh
source "$ROOT/scripts/lib.sh"
LOG_TAG=csi
PY=$ROOT/.venv/bin/python
"$PY" -c 'import grpc_tools' 2>/dev/null || { _log "grpcio-tools is not in .venv: run scripts/venv.sh Tests/csi/requirements.txt"; exit 1; }
export CAIRN_BIN
CAIRN_BIN=$(cairn_bin)
exec "$PY" "$ROOT/Tests/csi/csi_test.py" "$@"
