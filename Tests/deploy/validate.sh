#!/usr/bin/env bash
# Checks deploy/ without a cluster: the rendered operator YAML is the render of the kustomize
# tree, every object fits its schema (Tests/deploy/validate.py says which). Installs
# Tests/deploy/requirements.txt into .venv first (scripts/venv.sh), when not installed yet.
# Usage: Tests/deploy/validate.sh [--objects DIR]... [FILE]...
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
"$ROOT/scripts/venv.sh" "$ROOT/Tests/deploy/requirements.txt"
"$ROOT/scripts/render-deploy.sh" --check
exec "$ROOT/.venv/bin/python" "$ROOT/Tests/deploy/validate.py" "$@"
