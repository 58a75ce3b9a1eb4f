#!/usr/bin/env bash
# The embedded default: a 1 GiB volume replicated three ways on this machine.
# Three `cairn replica` processes keep their data under data/NAME/r1..r3 in the
# checkout; one `cairn controller` serves the volume on 127.0.0.1:3260 (and its
# HTTP API on 127.0.0.1:9500 when this build has one).  Prints the iSCSI URL,
# the API URL and client commands, runs until Ctrl-C, then stops everything it
# started (by pid).
#
# Environment: CAIRN_BIN (default: the newer of .build/{release,debug}/cairn),
#   DEMO_NAME=demo, DEMO_SIZE=1GiB, DEMO_PORT=3260, DEMO_API_PORT=9500,
#   DEMO_REPLICA_PORTS="3270 3271 3272", DEMO_DIR=data (in the checkout),
#   DEMO_LOG_LEVEL=info
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=lib.sh
source "$ROOT/scripts/lib.sh"
LOG_TAG=run

NAME=${DEMO_NAME:-demo}
SIZE=${DEMO_SIZE:-1GiB}
PORT=${DEMO_PORT:-3260}
API_PORT=${DEMO_API_PORT:-9500}
read -r -a RPORTS <<<"${DEMO_REPLICA_PORTS:-3270 3271 3272}"
DIR=${DEMO_DIR:-$ROOT/data}/$NAME
LEVEL=${DEMO_LOG_LEVEL:-info}
BIN=$(cairn_bin)
IQN=iqn.2026-11.io.cairn:$NAME
URL=iscsi://127.0.0.1:$PORT/$IQN/0

for p in "$PORT" "${RPORTS[@]}"; do
    if listening "$p"; then
        _log "something already listens on port $p:"; ss -ltnp "sport = :$p" >&2 || true
        _log "stop it, or pick other ports: DEMO_PORT=3261 DEMO_REPLICA_PORTS='3280 3281 3282' make run"
        exit 1
    fi
done
mkdir -p "$DIR"

# The volume's secret authenticates the replica links (both ways); made once, kept with the data.
SECRET=$DIR/secret
if [ ! -s "$SECRET" ]; then
    (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$SECRET")
fi
# A volume grown through the API since (PUT /v1/volume/size) keeps its size: the controller is
# started with what the replicas hold when that is larger than DEMO_SIZE.
if [ -f "$DIR/r1/replica.json" ]; then
    held=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["size"])' "$DIR/r1/replica.json")
    SIZE=$(python3 -c 'import sys
units = {"": 1, "b": 1, "k": 1 << 10, "ki": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mi": 1 << 20, "mib": 1 << 20,
         "g": 1 << 30, "gi": 1 << 30, "gib": 1 << 30, "t": 1 << 40, "ti": 1 << 40, "tib": 1 << 40}
s = sys.argv[1].strip().lower(); n = len(s) - len(s.lstrip("0123456789"))
want = int(s[:n]) * units.get(s[n:], 1); held = int(sys.argv[2])
print(sys.argv[1] if want >= held else held)' "$SIZE" "$held")
fi

PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do stop_pid "$pid" 15 || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM
trap 'exit 129' HUP  # a closed terminal: the replicas, in their own sessions, do not get it

# Each replica in a session of its own (setsid, which execs it in place: $! is the replica), so
# that Ctrl-C, which the terminal sends to its whole foreground process group, reaches only
# this script and the controller. The EXIT trap then stops the controller first and the
# replicas after it: replicas that quit under a running controller would be ejected, and the
# next start would rebuild them.
replica_args=()
for i in "${!RPORTS[@]}"; do
    n=$((i + 1)) p=${RPORTS[$i]}
    setsid "$BIN" replica --dir "$DIR/r$n" --listen "127.0.0.1:$p" --size "$SIZE" --log-level "$LEVEL" \
        --secret-file "$SECRET" </dev/null >>"$DIR/r$n.log" 2>&1 &
    PIDS+=($!)
    replica_args+=(--replica "127.0.0.1:$p")
done
for p in "${RPORTS[@]}"; do
    wait_listen "$p" 30 || { _log "replica on port $p did not start; see $DIR/r*.log"; exit 1; }
done

api_args=() api_line="(this build has no HTTP API)"
if "$BIN" controller --help 2>&1 | grep -q -- '--api'; then
    api_args=(--api "127.0.0.1:$API_PORT")
    api_line="API: http://127.0.0.1:$API_PORT   (curl -s http://127.0.0.1:$API_PORT/v1/replicas)"
fi

fio_bin="$ROOT/.cache/fio/fio"
[ -x "$fio_bin" ] || fio_bin="$ROOT/.cache/fio/fio   # build it first: make fio"
cat <<EOT

  Cairn demo volume '$NAME' ($SIZE), 3 replicas under $DIR (ports ${RPORTS[*]}),
  replica links authenticated with $SECRET
  iSCSI URL: $URL
  $api_line

  In another terminal:
    iscsi-ls -s iscsi://127.0.0.1:$PORT
    iscsi-inq $URL
    qemu-img info $URL
    qemu-img convert -p -O raw some-disk.img $URL        # write an image onto the volume
    qemu-io -f raw -c 'read -v 0 512' $URL
    FIO_TARGET='${URL//:/\\:}' SIZE=$SIZE RUNTIME=20 RAMP=3 \\
      $fio_bin $ROOT/Perf/fio/randwrite-4k-qd32.fio
    kill -9 \$(pgrep -f 'cairn replica --dir $DIR/r2')   # lose a replica; restart it with:
    $BIN replica --dir $DIR/r2 --listen 127.0.0.1:${RPORTS[1]} --secret-file $SECRET &
    curl -s -X PUT -d '{"writeIops": 2000}' http://127.0.0.1:$API_PORT/v1/qos       # limit writes, live
    curl -s -X PUT -d '{"size": $((2 << 30))}' http://127.0.0.1:$API_PORT/v1/volume/size   # grow to 2 GiB, online

  Ctrl-C stops the controller and the replicas.

EOT

"$BIN" controller --name "$NAME" --size "$SIZE" "${replica_args[@]}" "${api_args[@]}" \
    --secret-file "$SECRET" --portal "127.0.0.1:$PORT" --log-level "$LEVEL" &
CPID=$!
PIDS=("$CPID" "${PIDS[@]}")
wait "$CPID"
