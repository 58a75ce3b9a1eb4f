#!/bin/sh
# Builds the libFuzzer harness for the iSCSI PDU codec and login negotiator into Fuzz/out/pdu-fuzz.
# The codec files compile alone: no sockets, no actors; CRC32C and MD5 fall back to pure Swift
# (Digest.swift / CHAP.swift use `#if canImport(CCairn)` / `#if canImport(Crypto)`).
# Run: Fuzz/out/pdu-fuzz -max_total_time=60 Fuzz/corpus
set -eu
cd "$(dirname "$0")/.."
mkdir -p Fuzz/out Fuzz/corpus
S=Sources/CairnISCSI
swiftc -sanitize=fuzzer,address -parse-as-library -Onone -g -swift-version 6 -module-name CairnISCSIFuzz \
    Fuzz/PDUFuzz.swift $S/BasicHeaderSegment.swift $S/PDU.swift $S/TextKeys.swift $S/Digest.swift \
    $S/CHAP.swift $S/LoginNegotiator.swift \
    $(command -v ld.lld >/dev/null 2>&1 && echo -use-ld=lld) -o Fuzz/out/pdu-fuzz
# Seed corpus: a login request with typical keys.
if [ ! -s Fuzz/corpus/login ]; then
    printf '\000\103\207\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\001\000\000\000\000\000\000\000\001\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000' > Fuzz/corpus/login.hdr
    printf 'InitiatorName=iqn.x:y\000TargetName=iqn.2026-11.io.cairn:fuzz\000HeaderDigest=None\000' > Fuzz/corpus/login.txt
    python3 - <<'PY'
hdr = bytearray(open("Fuzz/corpus/login.hdr","rb").read())
txt = open("Fuzz/corpus/login.txt","rb").read()
n = len(txt)
hdr[1+5:1+8] = n.to_bytes(3, "big")
pad = (4 - n % 4) % 4
open("Fuzz/corpus/login","wb").write(bytes(hdr) + txt + b"\0"*pad)
PY
    rm -f Fuzz/corpus/login.hdr Fuzz/corpus/login.txt
fi
echo "built Fuzz/out/pdu-fuzz"
