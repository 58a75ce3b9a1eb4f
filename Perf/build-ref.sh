#!/usr/bin/env bash
# Perf/build-ref.sh COMMIT: a release build of cairn at COMMIT, the perf gate's reference;
# prints the binary's path (everything else goes to stderr). Built from a git worktree of this
# repository (.cache/perf-ref/src, checked out at COMMIT) into a build folder of its own
# (.cache/perf-ref/build: a later commit builds incrementally), and kept per commit as
# .cache/perf-ref/bin/cairn-<sha>: a second call for one commit builds nothing.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
[ $# -eq 1 ] || { echo "usage: Perf/build-ref.sh COMMIT" >&2; exit 2; }
sha=$(git -C "$ROOT" rev-parse --verify --quiet "$1^{commit}") || { echo "build-ref: $1 is not a commit" >&2; exit 2; }
CACHE=$ROOT/.cache/perf-ref
out=$CACHE/bin/cairn-$sha
if [ -x "$out" ]; then echo "$out"; exit 0; fi
mkdir -p "$CACHE/bin"
SWIFT=${SWIFT:-swift}
command -v "$SWIFT" >/dev/null || SWIFT=/opt/swift/usr/bin/swift
exec 9>"$CACHE/lock"
flock 9  # two gates at once build one at a time
if [ -x "$out" ]; then echo "$out"; exit 0; fi

src=$CACHE/src
git -C "$ROOT" worktree prune
if [ -e "$src/.git" ]; then
    git -C "$src" checkout --quiet --detach --force "$sha" >&2
    git -C "$src" clean --quiet -fdx -e .build >&2
else
    rm -rf "$src"
    git -C "$ROOT" worktree add --quiet --detach --force "$src" "$sha" >&2
fi
# The working tree's resolved versions where the reference names the same packages.
[ -f "$ROOT/Package.resolved" ] && cp "$ROOT/Package.resolved" "$src/Package.resolved"
echo "build-ref: building cairn at ${sha:0:12} (release) in $CACHE/build" >&2
"$SWIFT" build -c release --product cairn --package-path "$src" --scratch-path "$CACHE/build" >&2
bin=$("$SWIFT" build -c release --package-path "$src" --scratch-path "$CACHE/build" --show-bin-path)
cp "$bin/cairn" "$out.tmp"
mv "$out.tmp" "$out"
echo "$out"
