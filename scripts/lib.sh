# shellcheck shell=bash
# Shared helpers for Cairn's scripts (sourced, not run).
#
#   free_port                     print a free TCP port on 127.0.0.1
#   wait_listen PORT SECS         wait until something listens on 127.0.0.1:PORT
#   stop_pid PID [SECS]           SIGTERM, wait up to SECS (default 10), then SIGKILL
#   cairn_bin                     path of the cairn binary ($CAIRN_BIN, else the
#                                 newer of .build/release/cairn and .build/debug/cairn)
#   cairn_start LOG ARGS...       start `cairn controller ARGS...` in the background,
#                                 stdout+stderr to LOG; wait (bounded by
#                                 CAIRN_READY_TIMEOUT, default 30 s) for its
#                                 "cairn: ready iscsi://..." line; sets CAIRN_PID
#                                 and CAIRN_URL
#   replica_start LOG DIR PORT SIZE [ARGS...]
#                                 start `cairn replica --dir DIR --listen
#                                 127.0.0.1:PORT --size SIZE ARGS...` in the
#                                 background, output to LOG; wait (bounded by
#                                 CAIRN_READY_TIMEOUT) for its "ready" line;
#                                 sets REPLICA_PID
#   CAIRN_WRAP                    a command prefix (must exec the program, e.g.
#                                 "taskset -c 1") for both of the above: a process
#                                 started pinned pins its io_uring workers too
#   tgt_start DIR PORT SIZE_MIB [BSOFLAGS]
#                                 start a private tgtd on 127.0.0.1:PORT with one
#                                 file-backed LUN (LUN 1; tgt's LUN 0 is its
#                                 controller LUN); sets TGT_PID, TGT_URL, TGT_CTRL
#   tgt_chap USER SECRET [MUTUAL_USER MUTUAL_SECRET]
#                                 require CHAP on the tgt target
#   tgt_stop                      stop that tgtd (by pid)
#
# Every address is 127.0.0.1; every process is stopped by pid.

CAIRN_ROOT=${CAIRN_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}

_log() { echo "[${LOG_TAG:-cairn}] $*" >&2; }

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# alive PID: the process exists and is not a zombie (a finished background
# child stays a zombie until waited for, and kill -0 still succeeds on it).
alive() {
    local st
    st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$st" ] && [ "$st" != Z ]
}

listening() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }

wait_listen() {  # PORT SECS
    local port=$1 deadline=$((SECONDS + $2))
    until listening "$port"; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.05
    done
}

stop_pid() {  # PID [SECS]
    local pid=$1 secs=${2:-10} deadline
    [ -n "$pid" ] || return 0
    if alive "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        deadline=$((SECONDS + secs))
        while alive "$pid" && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.05; done
    fi
    if alive "$pid"; then
        _log "pid $pid still alive after ${secs}s, sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

cairn_bin() {
    if [ -n "${CAIRN_BIN:-}" ]; then
        [ -x "$CAIRN_BIN" ] && { echo "$CAIRN_BIN"; return 0; }
        _log "CAIRN_BIN=$CAIRN_BIN is not an executable"; return 1
    fi
    # the newer of the release and debug builds
    local b best=
    for b in "$CAIRN_ROOT/.build/release/cairn" "$CAIRN_ROOT/.build/debug/cairn"; do
        if [ -x "$b" ] && { [ -z "$best" ] || [ "$b" -nt "$best" ]; }; then best=$b; fi
    done
    [ -n "$best" ] && { echo "$best"; return 0; }
    _log "no cairn binary (set CAIRN_BIN or run 'make build')"
    return 1
}

cairn_start() {  # LOG ARGS...
    local log=$1; shift
    local bin deadline line
    bin=$(cairn_bin) || return 1
    : >"$log"
    # shellcheck disable=SC2086  # CAIRN_WRAP is a command prefix, split on purpose
    ${CAIRN_WRAP:-} "$bin" controller "$@" </dev/null >>"$log" 2>&1 &
    CAIRN_PID=$!
    deadline=$((SECONDS + ${CAIRN_READY_TIMEOUT:-30}))
    CAIRN_URL=
    while [ -z "$CAIRN_URL" ]; do
        line=$(grep -m1 -o 'cairn: ready iscsi://[^[:space:]]*' "$log" || true)
        if [ -n "$line" ]; then CAIRN_URL=${line#cairn: ready }; break; fi
        if ! alive "$CAIRN_PID"; then
            _log "cairn exited before it was ready; its log ($log):"; tail -n 30 "$log" >&2
            CAIRN_PID=; return 1
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            _log "cairn not ready after ${CAIRN_READY_TIMEOUT:-30}s; its log ($log):"; tail -n 30 "$log" >&2
            stop_pid "$CAIRN_PID" 5; CAIRN_PID=; return 1
        fi
        sleep 0.05
    done
    _log "cairn pid $CAIRN_PID ready at $CAIRN_URL"
}

cairn_stop() {
    [ -n "${CAIRN_PID:-}" ] || return 0
    stop_pid "$CAIRN_PID" "${CAIRN_STOP_TIMEOUT:-15}"
    CAIRN_PID=
}

replica_start() {  # LOG DIR PORT SIZE [ARGS...]
    local log=$1 dir=$2 port=$3 size=$4; shift 4
    local bin deadline
    bin=$(cairn_bin) || return 1
    : >"$log"
    # shellcheck disable=SC2086
    ${CAIRN_WRAP:-} "$bin" replica --dir "$dir" --listen "127.0.0.1:$port" --size "$size" "$@" </dev/null >>"$log" 2>&1 &
    REPLICA_PID=$!
    deadline=$((SECONDS + ${CAIRN_READY_TIMEOUT:-30}))
    until grep -q 'cairn: replica .* ready on' "$log"; do
        if ! alive "$REPLICA_PID" || [ "$SECONDS" -ge "$deadline" ]; then
            _log "replica on port $port did not become ready; its log ($log):"; tail -n 30 "$log" >&2
            stop_pid "$REPLICA_PID" 5; REPLICA_PID=; return 1
        fi
        sleep 0.05
    done
}

TGT_IQN=${TGT_IQN:-iqn.2026-11.test:tgt}

_tgtadm() { timeout 30 tgtadm -C "$TGT_CTRL" "$@"; }

tgt_start() {  # DIR PORT SIZE_MIB [BSOFLAGS]
    local dir=$1 port=$2 size_mib=$3 bsoflags=${4:-} img deadline
    mkdir -p "$dir" || return 1
    img=$dir/lun1.img
    if [ "$(stat -c %s "$img" 2>/dev/null || echo 0)" -ne $((size_mib * 1048576)) ]; then
        rm -f "$img"
        # written once with zeros: real allocated blocks, like cairn's file
        timeout 300 dd if=/dev/zero of="$img" bs=1M count="$size_mib" conv=fsync status=none || return 1
    fi
    # The management socket is /var/run/tgtd/socket.$TGT_CTRL.  tgtd takes a
    # control port of at most 4 digits: derive one from the iSCSI port (which
    # is unique now) and skip any that a live tgtd owns.  Never 0 (the system
    # tgtd's).
    TGT_CTRL=$((port % 9000 + 1000))
    while [ -S "/var/run/tgtd/socket.$TGT_CTRL" ] && _tgtadm --mode sys --op show >/dev/null 2>&1; do
        TGT_CTRL=$((TGT_CTRL % 9999 + 1))
    done
    setsid tgtd -f -C "$TGT_CTRL" --iscsi "portal=127.0.0.1:$port" </dev/null >>"$dir/tgtd.log" 2>&1 &
    TGT_PID=$!   # setsid execs tgtd in place: $! is tgtd itself
    deadline=$((SECONDS + 20))
    until _tgtadm --mode sys --op show >/dev/null 2>&1; do
        if ! alive "$TGT_PID"; then _log "tgtd died; see $dir/tgtd.log"; TGT_PID=; return 1; fi
        [ "$SECONDS" -lt "$deadline" ] || { _log "tgtd management socket not up"; tgt_stop; return 1; }
        sleep 0.05
    done
    # (may run inside an `if`, where set -e does not apply: check each step)
    local lu=(--lld iscsi --mode logicalunit --op new --tid 1 --lun 1 --backing-store "$img")
    [ -n "$bsoflags" ] && lu+=(--bsoflags "$bsoflags")
    if ! { _tgtadm --lld iscsi --mode target --op new --tid 1 --targetname "$TGT_IQN" &&
           _tgtadm "${lu[@]}" &&
           _tgtadm --lld iscsi --mode target --op bind --tid 1 --initiator-address ALL; }; then
        _log "tgtadm failed configuring the target"; tgt_stop; return 1
    fi
    wait_listen "$port" 20 || { _log "tgtd not listening on $port"; tgt_stop; return 1; }
    TGT_URL="iscsi://127.0.0.1:$port/$TGT_IQN/1"
    _log "tgtd pid $TGT_PID ready at $TGT_URL${bsoflags:+ (bsoflags=$bsoflags)}"
}

tgt_chap() {  # USER SECRET [MUTUAL_USER MUTUAL_SECRET]
    _tgtadm --lld iscsi --mode account --op new --user "$1" --password "$2" &&
        _tgtadm --lld iscsi --mode account --op bind --tid 1 --user "$1" || return 1
    if [ -n "${3:-}" ]; then
        _tgtadm --lld iscsi --mode account --op new --user "$3" --password "$4" &&
            _tgtadm --lld iscsi --mode account --op bind --tid 1 --user "$3" --outgoing || return 1
    fi
}

tgt_stop() {
    [ -n "${TGT_PID:-}" ] || return 0
    if alive "$TGT_PID"; then
        _tgtadm --mode target --op delete --force --tid 1 >/dev/null 2>&1 || true
        _tgtadm --mode sys --op delete >/dev/null 2>&1 || true
    fi
    stop_pid "$TGT_PID" 10
    TGT_PID=
}
