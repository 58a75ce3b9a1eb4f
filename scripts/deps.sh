#!/usr/bin/env bash
# Install the Debian packages named on the command line that are missing.
# Usage: scripts/deps.sh PACKAGE...
# Checks each with dpkg-query; runs `apt-get update` once, then
# `apt-get install -y` for the missing ones (needs root), without starting
# services (tgt's own tgtd).  Nothing else is downloaded.
set -euo pipefail

missing=()
for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "[deps] missing Debian packages: ${missing[*]}; run as root: apt-get install ${missing[*]}" >&2
    exit 1
fi
echo "[deps] installing ${missing[*]}" >&2
timeout 900 apt-get update -q

# Installing tgt would start the system's tgtd on 0.0.0.0:3260 (where `make run`
# listens); our scripts only run private tgtd instances on 127.0.0.1.  While
# installing, a policy-rc.d tells the packages' scripts not to start services.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# temporary, from cairn scripts/deps.sh\nexit 101\n' >"$policy"
    chmod +x "$policy"
    trap 'rm -f "$policy"' EXIT
fi
DEBIAN_FRONTEND=noninteractive timeout 1800 apt-get install -y -q "${missing[@]}" </dev/null
