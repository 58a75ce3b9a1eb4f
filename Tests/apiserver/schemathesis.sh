#!/usr/bin/env bash
# schemathesis (PyPI, in .venv) against a real `cairn apiserver` and the OpenAPI document it
# serves: every operation with generated requests, valid and invalid; fails on any 5xx and on any
# answer whose status, content type or body the document does not allow.
#
# The apiserver runs on 127.0.0.1 with a port it picks, its own data directory and port range, two
# pools, and --pool-root (so generated pools stay in the scratch directory). Volumes the generated
# requests create are real: their processes are stopped with the apiserver (--stop-volumes-on-exit),
# and anything it recorded that still runs is killed by pid.
#
# Environment: CAIRN_BIN (default: the newer build), ST_MAX_EXAMPLES (default 25 per operation).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../../scripts/lib.sh
source "$ROOT/scripts/lib.sh"
LOG_TAG=schemathesis
ST=$ROOT/.venv/bin/schemathesis
[ -x "$ST" ] || { _log "schemathesis is not in .venv: run scripts/venv.sh Tests/apiserver/requirements.txt"; exit 1; }
BIN=$(cairn_bin)
WORK=$(mktemp -d /tmp/cairn-schemathesis-XXXXXX)
mkdir -p "$WORK/pools/p1" "$WORK/pools/p2"
LOG=$WORK/apiserver.log

"$BIN" apiserver --data "$WORK/state" --listen 127.0.0.1:0 --ports 31000-31799 --pool-root "$WORK/pools" \
    --stop-volumes-on-exit </dev/null >"$LOG" 2>&1 &
APID=$!
cleanup() {
    local pids
    pids=$(sqlite3 "$WORK/state/state.db" 'SELECT pid FROM process' 2>/dev/null || true)
    stop_pid "$APID" 60
    for p in $pids; do alive "$p" && kill -9 "$p" 2>/dev/null; done
    if [ "${KEEP:-0}" = 1 ]; then _log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
URL=
for _ in $(seq 1 600); do
    URL=$(grep -m1 -o 'cairn: apiserver http://[^[:space:]]*' "$LOG" | sed 's/cairn: apiserver //' || true)
    [ -n "$URL" ] && break
    alive "$APID" || { _log "the apiserver exited:"; cat "$LOG" >&2; exit 1; }
    sleep 0.05
done
[ -n "$URL" ] || { _log "the apiserver did not listen"; exit 1; }
export CAIRN_SERVER=$URL CAIRN_TOKEN_FILE=$WORK/state/token
"$BIN" pool add p1 --path "$WORK/pools/p1" >/dev/null
"$BIN" pool add p2 --path "$WORK/pools/p2" >/dev/null
TOKEN=$(cat "$WORK/state/token")

cat >"$WORK/schemathesis.toml" <<TOML
# An event stream that never ends is no answer to wait for: the generated requests leave it off.
[[operations]]
include-name = "GET /v1/events"
parameters = { follow = "0" }
TOML

_log "schemathesis ${ST_MAX_EXAMPLES:-25} examples per operation against $URL/openapi.json"
rc=0
(cd "$WORK" && "$ST" --config-file "$WORK/schemathesis.toml" run "$URL/openapi.json" \
    --url "$URL" -H "Authorization: Bearer $TOKEN" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    --max-examples "${ST_MAX_EXAMPLES:-25}" --request-timeout 60 --no-color --seed 1) || rc=$?
if [ $rc -ne 0 ]; then
    _log "FAILED (exit $rc); the apiserver's log:"; tail -n 40 "$LOG" >&2
fi
exit $rc
