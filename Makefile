# Cairn: build, run, test.  GNU make; on a fresh Debian 12 (as root, Swift at
# /opt/swift) `make run` and `make test` install what they need.
#
#   make deps          Debian packages the tools need (apt-get, only if missing)
#   make build         swift build (debug)          make release   (release build of cairn)
#   make run           the apiserver (127.0.0.1:9400), three pools and the volume demo, until Ctrl-C
#   make test          swift test, the conformance run, schemathesis against the apiserver, the CSI
#                      plugin (Tests/csi), the deploy/ manifests (Tests/deploy), the Kubernetes
#                      orchestrator against a stand-in API server (Tests/kubernetes); non-zero on any failure
#   make unit          swift test alone
#   make conformance   libiscsi's iscsi-test-cu against cairn (Tests/conformance/)
#   make perf          fio matrix in rounds, cairn (file, 1 and 3 replicas) vs tgt, scaling, charts
#                      (Perf/run; ROUNDS=3 RUNTIME=10 RAMP=2 JOBS=regex TARGETS=... SCALING=0|1)
#   make perf-check    the regression gate: the working tree against a reference build (the commit
#                      in Perf/baselines/reference, or REF=...) in one short run on tmpfs (Perf/check)
#   make perf-baseline write Perf/baselines/check.json (the gate's host report) from a run here
#                      (make perf REF=<commit>: the matrix with that build beside the working tree's)
#   make bench         micro benchmarks (Perf/Benchmarks), allocations per operation checked
#                      against Perf/Benchmarks/Thresholds (Perf/bench; BENCH_ARGS="--filter X")
#   make fio           fio with the libiscsi engine, built into .cache/fio/
#   make fuzz SECONDS=N   the PDU fuzzer (Fuzz/build.sh, then Fuzz/out/pdu-fuzz)

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := build

# Swift: the one on PATH, else /opt/swift.
ifeq ($(shell command -v swift),)
export PATH := /opt/swift/usr/bin:$(PATH)
endif
SWIFT ?= swift
SWIFT_BUILD_FLAGS ?=
SECONDS ?= 60

DEPS_APT := liburing-dev libiscsi-bin libiscsi-dev libsqlite3-dev sqlite3 libzstd-dev tgt qemu-utils qemu-block-extra \
            python3 iproute2 coreutils util-linux libc6-dev \
            qemu-system-common fuse3 e2fsprogs xfsprogs
FIO_APT  := dpkg-dev build-essential pkg-config zlib1g-dev libaio-dev python3-venv

DEBUG_BIN   = $(shell $(SWIFT) build --show-bin-path)/cairn
RELEASE_BIN = $(shell $(SWIFT) build -c release --show-bin-path)/cairn

.PHONY: deps deps-perf venv test-venv build release run test unit conformance perf perf-check perf-baseline bench fio fuzz clean

deps:
	@scripts/deps.sh $(DEPS_APT)

deps-perf: deps
	@scripts/deps.sh $(FIO_APT)

build:
	$(SWIFT) build $(SWIFT_BUILD_FLAGS)

release:
	$(SWIFT) build -c release --product cairn $(SWIFT_BUILD_FLAGS)

run: deps release
	CAIRN_BIN="$(RELEASE_BIN)" scripts/run-demo.sh

# swift test's own output (and its summary lines) goes out unfiltered.  The
# conformance run goes on when unit tests fail, so one CI run reports both.
# fio (built once into .cache/fio) is a prerequisite: the fio verify integration test must run,
# not skip, on a fresh clone.
test: deps build fio test-venv
	@rc=0; \
	$(SWIFT) test $(SWIFT_BUILD_FLAGS) || rc=1; \
	CAIRN_BIN="$(DEBUG_BIN)" Tests/conformance/run.sh || rc=1; \
	CAIRN_BIN="$(DEBUG_BIN)" Tests/apiserver/schemathesis.sh || rc=1; \
	CAIRN_BIN="$(DEBUG_BIN)" Tests/csi/run.sh || rc=1; \
	CAIRN_BIN="$(DEBUG_BIN)" Tests/deploy/validate.sh || rc=1; \
	CAIRN_BIN="$(DEBUG_BIN)" Tests/kubernetes/run.sh || rc=1; \
	if [ $$rc -ne 0 ]; then echo "make test: FAILED (see above)"; else echo "make test: OK"; fi; \
	exit $$rc

unit: deps build
	$(SWIFT) test $(SWIFT_BUILD_FLAGS)

conformance: deps build
	CAIRN_BIN="$(DEBUG_BIN)" Tests/conformance/run.sh

fio: deps-perf
	@Perf/build-fio.sh

# matplotlib (PyPI) for the perf report's charts, in .venv of the checkout
venv: deps-perf
	@scripts/venv.sh

# schemathesis (PyPI) for the apiserver's OpenAPI conformance run, in the same .venv
test-venv: deps-perf
	@scripts/venv.sh Tests/apiserver/requirements.txt Tests/backup/requirements.txt Tests/csi/requirements.txt \
	    Tests/deploy/requirements.txt

perf: deps-perf release fio venv
	CAIRN_BIN="$(RELEASE_BIN)" Perf/run

perf-check: deps-perf release fio
	CAIRN_BIN="$(RELEASE_BIN)" Perf/check

perf-baseline: deps-perf release fio
	CAIRN_BIN="$(RELEASE_BIN)" Perf/check --write-baseline

# Its own package (Perf/Benchmarks, its own .build): the main build never compiles the framework.
bench: deps
	Perf/bench

fuzz:
	@if [ ! -x Fuzz/build.sh ]; then \
	    echo "make fuzz: Fuzz/build.sh is missing (or not executable): the PDU fuzz harness is not in this checkout" >&2; \
	    exit 1; \
	fi
	Fuzz/build.sh
	Fuzz/out/pdu-fuzz -max_total_time=$(SECONDS)

clean:
	$(SWIFT) package clean
	rm -rf Tests/conformance/out
