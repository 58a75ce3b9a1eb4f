#!/usr/bin/env bash
# Conformance run: libiscsi's iscsi-test-cu against `cairn controller` (or tgt).
#
# Usage: Tests/conformance/run.sh
#
# For each variant, a fresh target is started on free loopback ports (two
# portals: the second one is the extra URL the MultipathIO suite needs), then
# every suite of `iscsi-test-cu -t ALL` runs as its own process under
# `timeout` (libiscsi has no command timeout).  When a suite is killed or
# crashes, the test that was running is NORESULT and the tests after it are
# re-run one by one, each under its own timeout, so one hung test does not hide
# the rest.  The per-test results are checked against expected.tsv (see
# tcu.py): a failure, crash or hang fails the run, and so does a skip where a
# pass is expected; a pass where a skip is expected is an improvement.
#
# Full variants run every test of `iscsi-test-cu -t ALL` against a default LU
# (fixed medium, writable, one logical block per physical block) and are
# checked against expected.tsv.  Focused variants serve an LU with a device
# property that libiscsi gates tests on, and run only the tests that exist for
# it.  A focused variant VARIANT has its own file, expected-VARIANT.tsv, in
# expected.tsv's format plus a third status, "exclude":
#   SUITE.TEST <TAB> pass|skip|exclude <TAB> reason
# The variant runs exactly its pass/skip lines (a whole suite in one
# iscsi-test-cu process when every test of the suite is listed, else one
# process per test); those lines override expected.tsv's expectations (Probe.*
# and Target.* come from expected.tsv); exclude lines name tests of those
# suites it does not run, with the reason, and are listed in its summary.  The
# same rules fail it: FAIL, NORESULT, NOTRUN, a skip where pass is expected,
# and an excluded test that ran.
#
# Variants (VARIANTS, default "plain chap hdigest removable lbppb readonly"):
#   plain    no authentication, no digests
#   chap     target requires CHAP; iscsi-test-cu logs in with
#            LIBISCSI_CHAP_USERNAME / LIBISCSI_CHAP_PASSWORD (read by
#            iscsi_create_context for every session it opens).  Probes: a login
#            without credentials and one with a wrong secret must both fail.
#   mchap    as chap, plus mutual CHAP (LIBISCSI_CHAP_TARGET_USERNAME /
#            LIBISCSI_CHAP_TARGET_PASSWORD; cairn --mutual-chap-user/-secret)
#   hdigest  HeaderDigest=CRC32C.  The URL parameter ?header_digest=crc32c does
#            not work for iscsi-test-cu (nor iscsi-inq): both call
#            iscsi_set_header_digest(NONE_CRC32C) after parsing the URL, so the
#            login offers "None,CRC32C" and a target may pick None.  We preload
#            force-digest.so, which makes that call offer exactly "CRC32C", and
#            a probe checks the target's login reply says HeaderDigest=CRC32C.
# Focused (each with its expected-VARIANT.tsv):
#   removable  --removable (RMB=1): PreventAllow.*, StartStopUnit.*, NoMedia.*
#   lbppb      --physical-block-size 4096 on 512-byte blocks (LBPPBE 3): the
#              LBPPB-gated tests with their suites (CompareAndWrite, WriteSame10/16,
#              Unmap, GetLBAStatus less UnmapSingle), ReadCapacity16, Inquiry.BlockLimits
#   readonly   --read-only (WP=1) on a file created beforehand: ReadOnly.*, two reads
#
# Environment:
#   TARGET=cairn|tgt   what to test (default cairn; tgt = Debian's tgtd, used to
#                      develop this harness and as the reference)
#   CAIRN_BIN          cairn binary (default .build/{release,debug}/cairn; built
#                      with `swift build --product cairn` when there is none)
#   VARIANTS           see above
#   SUITES             comma-separated suite names to run (default: all; a
#                      focused variant runs its tests in those suites)
#   SUITE_TIMEOUT=120  seconds for one suite;  TEST_TIMEOUT=30  for one test
#   VARIANT_BUDGET=300 seconds of iscsi-test-cu per variant, TOTAL_BUDGET=720 for
#                      all variants; past either, and when the target stops
#                      answering after a timeout, the variant stops and its
#                      remaining tests are NOTRUN (keeps CI bounded)
#   SIZE_MIB=128       size of the scratch LUN
#   EXPECTED           expectations file (default Tests/conformance/expected.tsv)
#   OUT                output directory (default Tests/conformance/out)
# Output: $OUT/<variant>/ raw outputs, results.tsv (per test), summary.txt;
#         $OUT/summary.txt (all variants).  Exit 1 if any variant fails.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# shellcheck source=../../scripts/lib.sh
source "$ROOT/scripts/lib.sh"
LOG_TAG=conformance

TARGET=${TARGET:-cairn}
VARIANTS=${VARIANTS:-plain chap hdigest removable lbppb readonly}
SUITE_TIMEOUT=${SUITE_TIMEOUT:-120}
TEST_TIMEOUT=${TEST_TIMEOUT:-30}
VARIANT_BUDGET=${VARIANT_BUDGET:-300}
TOTAL_BUDGET=${TOTAL_BUDGET:-720}
TOTAL_END=$((SECONDS + TOTAL_BUDGET))
SIZE_MIB=${SIZE_MIB:-128}
EXPECTED=${EXPECTED:-$HERE/expected.tsv}
OUT=${OUT:-$HERE/out}
TCU=(python3 "$HERE/tcu.py")

CHAP_USER=cairn-initiator
CHAP_SECRET=conformance-secret-1
MCHAP_USER=cairn-target
MCHAP_SECRET=conformance-secret-2

for tool in iscsi-test-cu iscsi-inq stdbuf ss python3; do
    command -v "$tool" >/dev/null || { _log "$tool not found: run 'make deps'"; exit 1; }
done
case "$TARGET" in
    cairn) if ! cairn_bin >/dev/null 2>&1; then
               _log "building cairn (swift build --product cairn)"
               (cd "$ROOT" && timeout 1800 swift build --product cairn)
           fi
           CAIRN_BIN=$(cairn_bin); export CAIRN_BIN ;;
    tgt) command -v tgtd >/dev/null || { _log "tgtd not found: run 'make deps'"; exit 1; } ;;
    *) _log "TARGET must be cairn or tgt"; exit 2 ;;
esac

mkdir -p "$OUT"
for v in plain chap mchap hdigest removable lbppb readonly; do rm -rf "${OUT:?}/$v"; done
rm -f "$OUT/summary.txt" "$OUT/tests.txt" "$OUT/all-tests.txt" "$OUT/force-digest.so"
OUT=$(cd "$OUT" && pwd)

# The header-digest shim (see force-digest.c).
CC=$(command -v cc || command -v gcc || command -v clang || echo /opt/swift/usr/bin/clang)
timeout 120 "$CC" -shared -fPIC -O2 -o "$OUT/force-digest.so" "$HERE/force-digest.c" -ldl

timeout 30 iscsi-test-cu --list | "${TCU[@]}" list >"$OUT/all-tests.txt"
if [ -n "${SUITES:-}" ]; then
    pat="^($(echo "$SUITES" | tr -d ' ' | tr ',' '|'))\."
    grep -E "$pat" "$OUT/all-tests.txt" >"$OUT/tests.txt" || { _log "no suite matches SUITES=$SUITES"; exit 2; }
else
    cp "$OUT/all-tests.txt" "$OUT/tests.txt"
fi

# --- targets -------------------------------------------------------------------
TGT_PID= CAIRN_PID=
cleanup() { cairn_stop; tgt_stop; }
trap cleanup EXIT

start_target() {  # VARIANT DIR -> URL, URL2
    local variant=$1 dir=$2 p1 p2 args=()
    p1=$(free_port); p2=$(free_port)
    while [ "$p2" = "$p1" ]; do p2=$(free_port); done
    if [ "$TARGET" = cairn ]; then
        args=(--name conformance --size "${SIZE_MIB}MiB" --file "$dir/lun.img"
              --portal "127.0.0.1:$p1" --portal "127.0.0.1:$p2" --log-level "${CAIRN_LOG_LEVEL:-info}"
              # SANITIZE runs paced in the background; Sanitize.Reset checks it is still running
              # ~5 s in, so the scratch LUN's overwrite must take longer than that.
              --sanitize-rate "$(( SIZE_MIB * 1024 * 1024 / 6 ))")
        case "$variant" in
            # The secrets from files (0600), as the README recommends: not in argv, where ps shows them.
            chap)  (umask 077; printf '%s\n' "$CHAP_SECRET" >"$dir/chap.secret")
                   args+=(--chap-user "$CHAP_USER" --chap-secret-file "$dir/chap.secret") ;;
            mchap) (umask 077; printf '%s\n' "$CHAP_SECRET" >"$dir/chap.secret"; printf '%s\n' "$MCHAP_SECRET" >"$dir/mchap.secret")
                   args+=(--chap-user "$CHAP_USER" --chap-secret-file "$dir/chap.secret"
                          --mutual-chap-user "$MCHAP_USER" --mutual-chap-secret-file "$dir/mchap.secret") ;;
            removable) args+=(--removable) ;;
            lbppb) args+=(--physical-block-size 4096) ;;
            # --read-only opens an existing file and never creates or sizes it.
            readonly) rm -f "$dir/lun.img"
                      truncate -s "${SIZE_MIB}M" "$dir/lun.img" || return 1
                      args+=(--read-only) ;;
        esac
        # (called in an `if`, where set -e does not apply: every step checks itself)
        cairn_start "$dir/cairn.log" "${args[@]}" || return 1
        URL=$CAIRN_URL
        URL2=${URL/:$p1\//:$p2/}
    else
        tgt_start "$dir" "$p1" "$SIZE_MIB" || return 1
        _tgtadm --lld iscsi --mode portal --op new --param "portal=127.0.0.1:$p2" || return 1
        wait_listen "$p2" 10 || return 1
        case "$variant" in
            chap)  tgt_chap "$CHAP_USER" "$CHAP_SECRET" || return 1 ;;
            mchap) tgt_chap "$CHAP_USER" "$CHAP_SECRET" "$MCHAP_USER" "$MCHAP_SECRET" || return 1 ;;
            # tgt's default is HeaderDigest=None, and it answers None even to an
            # initiator offering only CRC32C: ask it for CRC32C explicitly.
            hdigest) _tgtadm --lld iscsi --mode target --op update --tid 1 --name HeaderDigest --value CRC32C || return 1 ;;
            removable|lbppb|readonly)
                local param=removable=1
                [ "$variant" = lbppb ] && param=lbppbe=3
                [ "$variant" = readonly ] && param=readonly=1
                _tgtadm --lld iscsi --mode logicalunit --op update --tid 1 --lun 1 --params "$param" || return 1 ;;
        esac
        URL=$TGT_URL
        URL2=${URL/:$p1\//:$p2/}
    fi
}

stop_target() {  # DIR: records whether the target survived the run
    if [ "$TARGET" = cairn ]; then
        local rc=0
        if ! alive "$CAIRN_PID"; then
            wait "$CAIRN_PID" 2>/dev/null || rc=$?
            echo "Target.Survived	FAIL	cairn exited during the run (status $rc); see cairn.log"
            CAIRN_PID=
            return
        fi
        kill -TERM "$CAIRN_PID"
        local deadline=$((SECONDS + ${CAIRN_STOP_TIMEOUT:-15}))
        while alive "$CAIRN_PID" && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.05; done
        if alive "$CAIRN_PID"; then
            echo "Target.Survived	FAIL	cairn did not exit within ${CAIRN_STOP_TIMEOUT:-15}s of SIGTERM"
            cairn_stop
            return
        fi
        wait "$CAIRN_PID" 2>/dev/null || rc=$?
        CAIRN_PID=
        if [ "$rc" -eq 0 ]; then echo "Target.Survived	PASS	"
        else echo "Target.Survived	FAIL	cairn exited with status $rc after SIGTERM"; fi
    else
        if alive "$TGT_PID"; then echo "Target.Survived	PASS	"
        else echo "Target.Survived	FAIL	tgtd exited during the run"; fi
        tgt_stop
    fi
}

probe() {  # NAME EXPECT(ok|fail) CMD... -> one results line
    local name=$1 want=$2 rc=0; shift 2
    "$@" >>"$VDIR/probes.txt" 2>&1 || rc=$?
    if { [ "$want" = ok ] && [ "$rc" -eq 0 ]; } || { [ "$want" = fail ] && [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ]; }; then
        printf '%s\tPASS\t\n' "$name"
    else
        printf '%s\tFAIL\texpected %s, exit status %s\n' "$name" "$want" "$rc"
    fi
}

run_probes() {  # VARIANT
    local inq=(timeout 20 iscsi-inq "$URL")
    case "$1" in
        chap|mchap)
            probe Probe.ChapNoCredentialsRejected fail \
                env -u LIBISCSI_CHAP_USERNAME -u LIBISCSI_CHAP_PASSWORD "${inq[@]}"
            probe Probe.ChapWrongSecretRejected fail env LIBISCSI_CHAP_PASSWORD=wrong-secret-0 "${inq[@]}"
            probe Probe.ChapLogin ok "${inq[@]}"
            ;;
        hdigest)
            local reply
            reply=$(LIBISCSI_DEBUG=10 "${inq[@]}" 2>&1 | grep -o 'TargetLoginReply: HeaderDigest=[A-Za-z0-9]*' | head -n1 || true)
            echo "header digest probe: $reply" >>"$VDIR/probes.txt"
            if [ "$reply" = "TargetLoginReply: HeaderDigest=CRC32C" ]; then
                printf 'Probe.HeaderDigestNegotiated\tPASS\t\n'
            else
                printf 'Probe.HeaderDigestNegotiated\tFAIL\tlogin reply: %s\n' "${reply:-none (login failed?)}"
            fi
            ;;
    esac
}

tcu() {  # TIMEOUT PATTERN OUTFILE -> 1 if it was killed by the timeout
    local rc=0 urls=("$URL")
    # Only the MultipathIO suite uses the second path. Given to every suite it changes how
    # libiscsi 1.19 sets up its legacy single-context tests: seen here, Sanitize.Reset's
    # TESTUNITREADY then answers without seeing the SANITIZE it just sent (passes with one URL).
    case "$2" in *MultipathIO*) urls+=("$URL2") ;; esac
    timeout -k 5 "$1" stdbuf -o0 -e0 iscsi-test-cu -d -S -t "$2" "${urls[@]}" >"$3" 2>&1 || rc=$?
    echo "exit status $rc$([ "$rc" -eq 124 ] && echo " (killed after $1 s)")" >>"$3"
    [ "$rc" -ne 124 ] && [ "$rc" -ne 137 ]
}

# After a timeout: does the target still answer an INQUIRY?  If not, the rest
# of the variant is not run (each suite would only time out in turn).
responsive() { timeout 15 iscsi-inq "$URL" >/dev/null 2>&1; }

run_variant() {  # VARIANT -> 0 ok, 1 regressions
    local variant=$1 suite t started focused= vtests vsuites=() whole
    VDIR=$OUT/$variant
    mkdir -p "$VDIR"
    unset LIBISCSI_CHAP_USERNAME LIBISCSI_CHAP_PASSWORD LIBISCSI_CHAP_TARGET_USERNAME LIBISCSI_CHAP_TARGET_PASSWORD LD_PRELOAD CAIRN_HEADER_DIGEST
    case "$variant" in
        plain) ;;
        chap)  export LIBISCSI_CHAP_USERNAME=$CHAP_USER LIBISCSI_CHAP_PASSWORD=$CHAP_SECRET ;;
        mchap) export LIBISCSI_CHAP_USERNAME=$CHAP_USER LIBISCSI_CHAP_PASSWORD=$CHAP_SECRET \
                      LIBISCSI_CHAP_TARGET_USERNAME=$MCHAP_USER LIBISCSI_CHAP_TARGET_PASSWORD=$MCHAP_SECRET ;;
        hdigest) export LD_PRELOAD=$OUT/force-digest.so CAIRN_HEADER_DIGEST=crc32c ;;
        removable|lbppb|readonly) focused=$HERE/expected-$variant.tsv ;;
        *) _log "unknown variant $variant"; return 1 ;;
    esac
    # The tests this variant runs: all of tests.txt, or a focused variant's own list.
    vtests=$OUT/tests.txt
    if [ -n "$focused" ]; then
        vtests=$VDIR/selected.txt
        "${TCU[@]}" select "$focused" "$OUT/tests.txt" "$OUT/all-tests.txt" >"$vtests" || return 1
        if [ ! -s "$vtests" ]; then
            echo "conformance $variant ($TARGET): nothing to run (SUITES=${SUITES:-} selects none of its tests)" | tee "$VDIR/summary.txt"
            return 0
        fi
    fi
    mapfile -t vsuites < <(cut -d. -f1 "$vtests" | awk '!seen[$0]++')
    _log "=== variant $variant: starting $TARGET"
    if ! start_target "$variant" "$VDIR"; then
        echo "conformance $variant ($TARGET): FAILED: the target did not start (see above and $VDIR)" | tee "$VDIR/summary.txt"
        cairn_stop; tgt_stop
        return 1
    fi
    _log "$variant: $URL (+ $URL2), ${#vsuites[@]} suites, $(wc -l <"$vtests") tests"
    local t0=$SECONDS
    run_probes "$variant" >"$VDIR/probes.tsv"
    local budget_end=$((SECONDS + VARIANT_BUDGET)) aborted=
    [ "$budget_end" -le "$TOTAL_END" ] || budget_end=$TOTAL_END
    for suite in "${vsuites[@]}"; do
        if [ "$SECONDS" -ge "$budget_end" ]; then
            aborted="time budget (VARIANT_BUDGET/TOTAL_BUDGET) used up before suite $suite"; break
        fi
        # A suite runs whole when this variant runs all its tests (always, in a full variant);
        # otherwise its tests run one by one, as below.
        whole=1
        if [ -n "$focused" ] &&
           [ "$(grep "^$suite\." "$OUT/all-tests.txt" | sort)" != "$(grep "^$suite\." "$vtests" | sort)" ]; then
            whole=
        fi
        started=
        if [ -n "$whole" ]; then
            if ! tcu "$SUITE_TIMEOUT" "ALL.$suite" "$VDIR/suite-$suite.txt"; then
                _log "$variant: suite $suite killed after ${SUITE_TIMEOUT}s"
                responsive || { aborted="target unresponsive after suite $suite hung"; break; }
            fi
            started=$("${TCU[@]}" parse "$VDIR/suite-$suite.txt" | cut -f1)
        fi
        # Tests that never started (the suite was killed or crashed before them, or the
        # suite is not run whole) run one by one.
        while read -r t; do
            if ! grep -qxF "$t" <<<"$started" && ! grep -qxF "$suite.*" <<<"$started"; then
                [ "$SECONDS" -lt "$budget_end" ] || { aborted="time budget (VARIANT_BUDGET/TOTAL_BUDGET) used up in suite $suite"; break; }
                [ -z "$whole" ] || _log "$variant: $t did not run in its suite run; running it alone"
                if ! tcu "$TEST_TIMEOUT" "ALL.$t" "$VDIR/test-$t.txt"; then
                    responsive || { aborted="target unresponsive after $t hung"; break; }
                fi
            fi
        done < <(grep "^$suite\." "$vtests")
        [ -z "$aborted" ] || break
    done
    if [ -n "$aborted" ]; then
        _log "$variant: stopped early: $aborted"
        printf 'Target.Completed\tFAIL\t%s (the tests not run are NOTRUN)\n' "$aborted" >>"$VDIR/probes.tsv"
    else
        printf 'Target.Completed\tPASS\t\n' >>"$VDIR/probes.tsv"
    fi
    stop_target "$VDIR" >>"$VDIR/probes.tsv"
    rm -f "$VDIR/lun.img" "$VDIR/lun1.img"
    _log "$variant: iscsi-test-cu took $((SECONDS - t0)) s"
    # Suite files first, then single-test runs, which override.
    local files=()
    for suite in "${vsuites[@]}"; do [ -e "$VDIR/suite-$suite.txt" ] && files+=("$VDIR/suite-$suite.txt"); done
    for t in "$VDIR"/test-*.txt; do [ -e "$t" ] && files+=("$t"); done
    { [ ${#files[@]} -eq 0 ] || "${TCU[@]}" parse "${files[@]}"; cat "$VDIR/probes.tsv"; } >"$VDIR/results.tsv"
    { cat "$vtests"; cut -f1 "$VDIR/probes.tsv"; } >"$VDIR/tests.txt"
    local rc=0 check=("$EXPECTED" "$VDIR/tests.txt" "$VDIR/results.tsv" --label "$variant ($TARGET)" --all "$OUT/all-tests.txt")
    [ -z "$focused" ] || check+=(--variant "$focused")
    "${TCU[@]}" check "${check[@]}" >"$VDIR/summary.txt" || rc=$?
    cat "$VDIR/summary.txt"
    return "$rc"
}

failed=()
for v in $VARIANTS; do
    run_variant "$v" || failed+=("$v")
done
{
    echo "conformance against $TARGET ($(date -u +%FT%TZ)), iscsi-test-cu from $(dpkg-query -W -f='libiscsi-bin ${Version}' libiscsi-bin 2>/dev/null || echo '?')"
    for v in $VARIANTS; do head -n1 "$OUT/$v/summary.txt" 2>/dev/null || echo "conformance $v: no summary"; done
    if [ ${#failed[@]} -eq 0 ]; then echo "conformance: OK"; else echo "conformance: FAILED (${failed[*]}); details in $OUT/<variant>/summary.txt"; fi
} | tee "$OUT/summary.txt"
[ ${#failed[@]} -eq 0 ]
