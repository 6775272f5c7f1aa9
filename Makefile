# flotilla — see README.md. Every target works on a fresh machine: `make deps` installs
# what is missing (libclang for RocksDB, busybox-static for the images).
SHELL := /bin/bash

# One warm target dir outside the clone: librocksdb-sys takes ~10 minutes to compile.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/flotilla/target
BIN := $(CARGO_TARGET_DIR)/debug/flotilla
export FLOTILLA_BIN ?= $(BIN)

.PHONY: deps build test demo demo-stop bench images lint fmt

deps:
	@bash scripts/deps.sh

build: deps
	cargo build --workspace --all-targets

# The test suite: unit, conformance and cluster tests (real agents on 127.0.0.1).
test: build images
	cargo nextest run --workspace --profile ci

# A local 3-node cluster on 127.0.0.1:7001-7003 running the example service.
demo: build images
	@bash scripts/demo.sh start

demo-stop:
	@bash scripts/demo.sh stop

images: deps
	@if [ -f docker/busybox/build.sh ]; then bash docker/busybox/build.sh; fi

# Benchmarks (see docs/BENCHMARKS.md). Built with the dev profile, whose dependencies
# are optimised, so RocksDB is compiled once for tests and benchmarks alike.
bench: build images
	cargo bench -p flotilla-scheduler --bench scheduler
	cargo bench --profile dev -p flotilla-tests --bench cluster
	cargo bench --profile dev -p flotilla-tests --bench executor

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all
