#!/usr/bin/env bash
# Create .venv in the checkout and install Perf/requirements.txt from PyPI
# into it, unless it is there already.  Prints nothing when nothing is to do.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=$ROOT/.venv
REQ=$ROOT/Perf/requirements.txt
STAMP=$VENV/.requirements
if [ -x "$VENV/bin/python" ] && cmp -s "$REQ" "$STAMP"; then exit 0; fi
echo "[venv] installing $(grep -v '^#' "$REQ" | tr '\n' ' ')into $VENV" >&2
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
timeout 900 "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQ"
cp "$REQ" "$STAMP"
