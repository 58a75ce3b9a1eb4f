#!/usr/bin/env bash
# Create .venv in the checkout and install requirement files from PyPI into it, unless they are
# installed already (a copy of each installed file is kept under .venv/.requirements/).
# Usage: scripts/venv.sh [REQUIREMENTS...]   (default: Perf/requirements.txt)
# Prints nothing when nothing is to do.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=$ROOT/.venv
[ $# -gt 0 ] || set -- "$ROOT/Perf/requirements.txt"
mkdir -p "$VENV/.requirements" 2>/dev/null || true
for REQ in "$@"; do
    STAMP=$VENV/.requirements/$(echo "$REQ" | sed "s|^$ROOT/||; s|/|_|g")
    if [ -x "$VENV/bin/python" ] && cmp -s "$REQ" "$STAMP"; then continue; fi
    echo "[venv] installing $(grep -v '^#' "$REQ" | tr '\n' ' ')into $VENV" >&2
    [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
    mkdir -p "$VENV/.requirements"
    timeout 900 "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQ"
    cp "$REQ" "$STAMP"
done
