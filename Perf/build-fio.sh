#!/usr/bin/env bash
# Build fio with the libiscsi ioengine from Debian's fio source package.
#
# Usage: Perf/build-fio.sh            prints the path of the fio binary on stdout
#
# Debian's /usr/bin/fio is built without libiscsi, so we rebuild it from the
# distribution's own source package (apt-get source fio) with
# ./configure --enable-libiscsi.  The result lives in .cache/fio/ of the
# checkout; a second run that finds a working binary does nothing.
#
# A fresh Debian 12 has no deb-src entries: this script adds one for the main
# archive of the mirror already configured (bookworm main only), then runs
# apt-get update.  Build dependencies are installed with apt-get when missing
# (needs root).  All build chatter goes to .cache/fio/build.log.
#
# Environment: FIO_JOBS (make -j, default 2)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=$ROOT/.cache/fio
BIN=$CACHE/fio
LOG=$CACHE/build.log
JOBS=${FIO_JOBS:-2}
mkdir -p "$CACHE"
# Two builds in one checkout (make test and make perf side by side) would share the source tree:
# the second waits for the first, then finds its binary.
exec 9>"$CACHE/.lock"
flock 9

log() { echo "[build-fio] $*" >&2; }
die() { log "$*"; exit 1; }
has_libiscsi() { [ -x "$1" ] && timeout 10 "$1" --enghelp 2>/dev/null | grep -qw libiscsi; }

if has_libiscsi "$BIN"; then
    echo "$BIN"
    exit 0
fi

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

# --- build dependencies (a minimal set, not the full build-dep of fio) --------
need=()
for p in dpkg-dev build-essential pkg-config libiscsi-dev zlib1g-dev libaio-dev; do
    installed "$p" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
    [ "$(id -u)" -eq 0 ] || die "missing packages: ${need[*]} (run as root or install them)"
    log "installing ${need[*]}"
    timeout 900 apt-get update >>"$LOG" 2>&1
    DEBIAN_FRONTEND=noninteractive timeout 1800 apt-get install -y --no-install-recommends "${need[@]}" >>"$LOG" 2>&1 \
        || die "apt-get install failed, see $LOG"
fi

# --- deb-src entry for the distribution's main archive --------------------------
have_debsrc() {
    grep -rqsE '^Types:.*deb-src' /etc/apt/sources.list.d/ ||
        grep -rqsE '^deb-src ' /etc/apt/sources.list /etc/apt/sources.list.d/
}
if ! have_debsrc; then
    [ "$(id -u)" -eq 0 ] || die "no deb-src entries in apt sources (run as root to add them)"
    # shellcheck disable=SC1091
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
    # The mirror of the existing binary entries: the first URI that serves
    # .../debian (not debian-security), deb822 or one-line format.
    mirror=$(grep -hsE '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -E '/debian/?$' | head -n1 || true)
    if [ -z "$mirror" ]; then
        mirror=$(grep -hsE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
                 | awk '{for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' \
                 | grep -E '/debian/?$' | head -n1 || true)
    fi
    mirror=${mirror:-http://deb.debian.org/debian}
    log "adding deb-src $mirror $codename main (/etc/apt/sources.list.d/cairn-deb-src.sources)"
    cat >/etc/apt/sources.list.d/cairn-deb-src.sources <<SRC
Types: deb-src
URIs: $mirror
Suites: $codename
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    timeout 900 apt-get update >>"$LOG" 2>&1 || die "apt-get update failed, see $LOG"
fi

# --- source ------------------------------------------------------------------------
SRCROOT=$CACHE/src
mkdir -p "$SRCROOT"
find_src() { find "$SRCROOT" -maxdepth 1 -mindepth 1 -type d -name 'fio-*' | sort | tail -n1; }
srcdir=$(find_src)
if [ -z "$srcdir" ] || [ ! -x "$srcdir/configure" ]; then
    log "fetching Debian's fio source into $SRCROOT"
    # As root, apt-get source warns that the download is unsandboxed: harmless.
    (cd "$SRCROOT" && timeout 900 apt-get source fio >>"$LOG" 2>&1) || {
        log "apt-get source failed; refreshing package lists and retrying"
        timeout 900 apt-get update >>"$LOG" 2>&1 || true
        (cd "$SRCROOT" && timeout 900 apt-get source fio >>"$LOG" 2>&1) || die "apt-get source fio failed, see $LOG"
    }
    srcdir=$(find_src)
fi
[ -n "$srcdir" ] || die "no fio source directory under $SRCROOT"

# --- configure and build --------------------------------------------------------
log "building $(basename "$srcdir") with libiscsi (make -j$JOBS, log: $LOG)"
(
    cd "$srcdir"
    # --disable-native: no -march=native baked into a cached binary.
    timeout 600 ./configure --enable-libiscsi --disable-native >>"$LOG" 2>&1
    grep -q '^CONFIG_LIBISCSI=y' config-host.mak || { echo "configure did not enable libiscsi" >&2; exit 1; }
    timeout 3600 nice make -j"$JOBS" fio >>"$LOG" 2>&1
) || die "fio build failed, see $LOG"

install -m 0755 "$srcdir/fio" "$BIN.tmp"
mv -f "$BIN.tmp" "$BIN"
has_libiscsi "$BIN" || die "built fio has no libiscsi engine"
log "built $("$BIN" --version) with the libiscsi engine"
echo "$BIN"
