#!/usr/bin/env bash
# The embedded default: `cairn apiserver` with three pools under data/pools/p1..p3 and the volume
# `demo` (1 GiB, 3 replicas), created through the apiserver's own API when missing. Prints the
# iSCSI URL, the API URL, the token file and CLI commands; runs until Ctrl-C, which stops the
# apiserver and, through --stop-volumes-on-exit, every volume's processes. The next `make run`
# finds the volume and its data where they were.
#
# Environment: CAIRN_BIN (default: the newer of .build/{release,debug}/cairn), DEMO_NAME=demo,
#   DEMO_SIZE=1GiB, DEMO_API_PORT=9400, DEMO_PORTS=20000-20999 (portals, controller APIs,
#   replicas), DEMO_DIR=data (in the checkout), DEMO_LOG_LEVEL=info
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=lib.sh
source "$ROOT/scripts/lib.sh"
LOG_TAG=run

NAME=${DEMO_NAME:-demo}
SIZE=${DEMO_SIZE:-1GiB}
API_PORT=${DEMO_API_PORT:-9400}
PORTS=${DEMO_PORTS:-20000-20999}
DIR=${DEMO_DIR:-$ROOT/data}
LEVEL=${DEMO_LOG_LEVEL:-info}
BIN=$(cairn_bin)
API=http://127.0.0.1:$API_PORT
STATE=$DIR/apiserver
TOKEN_FILE=$STATE/token

if listening "$API_PORT"; then
    _log "something already listens on port $API_PORT:"; ss -ltnp "sport = :$API_PORT" >&2 || true
    _log "stop it, or pick another port: DEMO_API_PORT=9401 make run"
    exit 1
fi
mkdir -p "$STATE" "$DIR"/pools/p{1,2,3}

APID=
cleanup() { [ -n "$APID" ] && stop_pid "$APID" 60; }
trap cleanup EXIT
trap 'exit 130' INT TERM
trap 'exit 129' HUP

# The apiserver in a session of its own: Ctrl-C reaches this script, which stops it (and it the
# volumes) in order.
setsid "$BIN" apiserver --data "$STATE" --listen "127.0.0.1:$API_PORT" --ports "$PORTS" \
    --stop-volumes-on-exit --log-level "$LEVEL" --process-log-level "$LEVEL" </dev/null >>"$STATE/apiserver.log" 2>&1 &
APID=$!
wait_listen "$API_PORT" 30 || { _log "the apiserver did not start; see $STATE/apiserver.log"; tail -n 20 "$STATE/apiserver.log" >&2; exit 1; }

export CAIRN_SERVER=$API CAIRN_TOKEN_FILE=$TOKEN_FILE
for i in 1 2 3; do
    "$BIN" pool add "p$i" --path "$DIR/pools/p$i" >/dev/null
done
if "$BIN" volume get "$NAME" >/dev/null 2>&1; then
    _log "volume $NAME is there (its processes were stopped with the last apiserver): starting it"
    "$BIN" volume get "$NAME" --wait >/dev/null
else
    "$BIN" volume create "$NAME" --size "$SIZE" --replicas 3 --wait >/dev/null
fi
URL=$("$BIN" volume get "$NAME" -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"]["url"])')

fio_bin="$ROOT/.cache/fio/fio"
[ -x "$fio_bin" ] || fio_bin="$ROOT/.cache/fio/fio"  # make fio builds it
"$BIN" volume get "$NAME"
cat <<EOT

  Cairn: apiserver $API (state in $STATE), pools under $DIR/pools,
  volume '$NAME': $URL

  In another terminal:
    export CAIRN_SERVER=$API CAIRN_TOKEN_FILE=$TOKEN_FILE
    $BIN volume list
    $BIN volume get $NAME                      # replicas, pools, rebuilds
    $BIN volume create scratch --size 256MiB --replicas 2 --wait
    $BIN volume expand $NAME --size 2GiB       # online; initiators see the new size
    $BIN volume qos $NAME --qos-write-iops 2000
    $BIN pool drain p1 --wait                  # every replica on p1 moves to the others
    $BIN events --follow
    qemu-io -f raw -c 'read -v 0 512' $URL
    FIO_TARGET='${URL//:/\\:}' SIZE=$SIZE RUNTIME=20 RAMP=3 $fio_bin $ROOT/Perf/fio/randwrite-4k-qd32.fio
    curl -s -H "Authorization: Bearer \$(cat $TOKEN_FILE)" $API/v1/volumes

  Ctrl-C stops the apiserver and every volume's processes; the data stays under $DIR.

EOT
wait "$APID"
