#!/usr/bin/env bash
# Regenerates Sources/CairnCSI/Generated/ from Sources/CairnCSI/csi.proto. The generated Swift is
# committed: building swift-protobuf's and grpc-swift-protobuf's protoc plugins takes minutes,
# more than the code they write. Needs protoc (Debian's protobuf-compiler); the plugins are built
# once into .build-protoc/ (gitignored) from the package versions Package.swift names.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/opt/swift/usr/bin:$PATH"
command -v protoc >/dev/null || scripts/deps.sh protobuf-compiler
gen=${PROTOC_PLUGIN_DIR:-.build-protoc}  # another folder that already holds the built plugins, if any
mkdir -p "$gen/dummy"
cat > "$gen/Package.swift" <<'PKG'
// swift-tools-version: 6.0
import PackageDescription
let package = Package(
  name: "protoc-plugins",
  dependencies: [
    .package(url: "https://github.com/apple/swift-protobuf", exact: "1.39.0"),
    .package(url: "https://github.com/grpc/grpc-swift-protobuf", exact: "2.4.1"),
  ],
  targets: [.executableTarget(name: "dummy", path: "dummy")]
)
PKG
echo 'print("")' > "$gen/dummy/main.swift"
(cd "$gen" && swift build -c release --product protoc-gen-swift && swift build -c release --product protoc-gen-grpc-swift-2)
bin=$(cd "$gen" && swift build -c release --show-bin-path)
out=Sources/CairnCSI/Generated
rm -f "$out"/*.swift
protoc -I Sources/CairnCSI -I /usr/include \
  --plugin=protoc-gen-swift="$bin/protoc-gen-swift" \
  --plugin=protoc-gen-grpc-swift="$bin/protoc-gen-grpc-swift-2" \
  --swift_out="$out" --swift_opt=Visibility=Internal \
  --grpc-swift_out="$out" --grpc-swift_opt=Visibility=Internal,Server=true,Client=false \
  Sources/CairnCSI/csi.proto
ls -l "$out"
