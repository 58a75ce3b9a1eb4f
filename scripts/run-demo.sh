#!/usr/bin/env bash
# A demo volume on this machine: `cairn controller` serving data/demo.img (1 GiB)
# on 127.0.0.1:3260, in the foreground until Ctrl-C.  Prints the iSCSI URL and
# client commands to paste into another terminal.
# (Today: one controller over a local file.  Later: 3 replicas + the controller.)
#
# Environment: CAIRN_BIN (default .build/release/cairn), DEMO_NAME=demo,
#   DEMO_SIZE=1GiB, DEMO_PORT=3260, DEMO_DIR=data (in the checkout),
#   DEMO_LOG_LEVEL=info
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=lib.sh
source "$ROOT/scripts/lib.sh"
LOG_TAG=run

NAME=${DEMO_NAME:-demo}
SIZE=${DEMO_SIZE:-1GiB}
PORT=${DEMO_PORT:-3260}
DIR=${DEMO_DIR:-$ROOT/data}
BIN=$(cairn_bin)
IQN=iqn.2026-11.io.cairn:$NAME
URL=iscsi://127.0.0.1:$PORT/$IQN/0

if listening "$PORT"; then
    _log "something already listens on port $PORT:"; ss -ltnp "sport = :$PORT" >&2 || true
    _log "stop it, or pick another port: DEMO_PORT=3261 make run"
    exit 1
fi
mkdir -p "$DIR"

fio_bin="$ROOT/.cache/fio/fio"
[ -x "$fio_bin" ] || fio_bin="$ROOT/.cache/fio/fio   # build it first: make fio"
cat <<EOT

  Cairn demo volume '$NAME' ($SIZE, file $DIR/$NAME.img)
  iSCSI URL: $URL

  In another terminal:
    iscsi-ls -s iscsi://127.0.0.1:$PORT
    iscsi-inq $URL
    iscsi-readcapacity16 $URL
    qemu-img info $URL
    qemu-img convert -p -O raw some-disk.img $URL        # write an image onto the volume
    qemu-io -f raw -c 'read -v 0 512' $URL
    FIO_TARGET='${URL//:/\\:}' RUNTIME=20 RAMP=3 \\
      $fio_bin $ROOT/Perf/fio/randread-4k-qd32.fio

  Ctrl-C stops the controller.

EOT

# exec: the controller gets Ctrl-C (SIGINT) directly and exits 0 after
# finishing in-flight I/O; its own "cairn: ready ..." line follows.
exec "$BIN" controller --name "$NAME" --size "$SIZE" --file "$DIR/$NAME.img" \
    --portal "127.0.0.1:$PORT" --log-level "${DEMO_LOG_LEVEL:-info}"
