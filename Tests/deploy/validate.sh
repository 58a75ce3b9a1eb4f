#!/usr/bin/env bash
# Checks deploy/ without a cluster: the rendered operator YAML is the render of the kustomize
# tree, every object fits its schema (Tests/deploy/validate.py says which). Installs
# Tests/deploy/requirements.txt into .venv first (scripts/venv.sh), when not installed yet.
# With the cairn binary (CAIRN_BIN, else the newer build) it also checks the objects the
# Kubernetes orchestrator applies for a 3-replica volume (`cairn kubernetes objects`, with the
# Jobs that remove its replicas' directories once it is deleted).
# Usage: Tests/deploy/validate.sh [--objects DIR]... [FILE]...
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../../scripts/lib.sh
source "$ROOT/scripts/lib.sh"
"$ROOT/scripts/venv.sh" "$ROOT/Tests/deploy/requirements.txt"
"$ROOT/scripts/render-deploy.sh" --check
OBJECTS=$(mktemp -d /tmp/cairn-deploy-XXXXXX)
trap 'rm -rf "$OBJECTS"' EXIT
BIN=$(cairn_bin)
"$BIN" kubernetes objects --volume demo --size 10GiB --replicas 3 --namespace cairn-system --wipe-jobs \
    --pool p1=node-a:/var/lib/cairn/p1 --pool p2=node-b:/var/lib/cairn/p2 --pool p3=node-c:/var/lib/cairn/p3 \
    >"$OBJECTS/volume-demo.yaml"
"$ROOT/.venv/bin/python" "$ROOT/Tests/deploy/validate.py" --objects "$OBJECTS" "$@"
