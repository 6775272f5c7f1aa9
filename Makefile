# flotilla — see README.md. Every target works on a fresh machine: `make deps` installs
# what is missing (libclang for RocksDB, busybox-static for the images).
SHELL := /bin/bash

# One warm target dir outside the clone: librocksdb-sys takes ~10 minutes to compile.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/flotilla/target
BIN := $(CARGO_TARGET_DIR)/debug/flotilla
export FLOTILLA_BIN ?= $(BIN)

.PHONY: deps build test demo demo-stop bench bench-fence bench-mesh images lint fmt docs release

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
	@if [ -x "$(FLOTILLA_BIN)" ]; then bash docker/node/build.sh; else echo "[node image] skipped: $(FLOTILLA_BIN) not built yet (make build; make cluster-up builds the image too)"; fi

# A 3-node cluster in containers (docker/compose.yaml, project `flotilla`), API on
# 127.0.0.1:17001-17003; builds missing images, waits for a leader. `cluster-down` removes
# the nodes and their workload containers and keeps the data volumes; with PURGE=1 it
# deletes the volumes too. See README.md, "Running the cluster in containers".
.PHONY: cluster-up cluster-down
cluster-up:
	@bash docker/cluster.sh up

cluster-down:
	@bash docker/cluster.sh down $(if $(PURGE),--volumes)

# Benchmarks (see docs/BENCHMARKS.md). Built with the dev profile, whose dependencies
# are optimised, so RocksDB is compiled once for tests and benchmarks alike.
bench: build images
	cargo bench -p flotilla-scheduler --bench scheduler
	cargo bench --profile dev -p flotilla-tests --bench cluster
	cargo bench --profile dev -p flotilla-tests --bench executor
	$(MAKE) bench-mesh
	$(MAKE) bench-fence

# The routing mesh against a direct connection to the container: latency of a new
# connection and a small GET, and throughput of an 8 MiB GET (real agents, Docker).
bench-mesh: build images
	cargo bench --profile dev -p flotilla-tests --bench mesh

# How long a cut-off node's slot takes to run again elsewhere, on_disconnect fence against
# replace, over FENCE_CUTS cuts (default 10; real agents, Docker, iptables).
bench-fence: build images
	FENCE_CUTS=$(or $(FENCE_CUTS),10) cargo nextest run -p flotilla-tests --test one_copy \
		--run-ignored only --no-capture bench_replacement_after_a_cut_fence_against_replace

# An optimised binary for real use, at $(CARGO_TARGET_DIR)/release/flotilla. The release
# profile compiles every dependency again, RocksDB's C++ included: see README.md, "Building
# for real use", for what that costs. The node image takes it with
# `FLOTILLA_BIN=$(CARGO_TARGET_DIR)/release/flotilla make images` (or `make cluster-up`).
RELEASE_BIN := $(CARGO_TARGET_DIR)/release/flotilla
release: deps
	cargo build --release -p flotilla --bin flotilla
	@echo "built $(RELEASE_BIN)"

# Fuzzing (docs/FUZZING.md): libFuzzer with nightly + cargo-fuzz, else the stable harness.
.PHONY: fuzz fuzz-smoke
fuzz:
	@bash scripts/fuzz.sh

fuzz-smoke:
	@FUZZ_SECONDS=20 FUZZ_TOTAL_SECONDS=150 bash scripts/fuzz.sh

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all

# docs/CLI.md is generated from the CLI's definitions (a test fails when it is stale).
docs: build
	$(BIN) docs > docs/CLI.md

# Chaos runs (docs/RELIABILITY.md): a 3-node Docker cluster, concurrent clients and a
# seeded fault schedule, then the checks. SEEDS runs; CHAOS_SEED=S replays one seed.
SEEDS ?= 5
BROKEN_TARGET := $(HOME)/.cache/flotilla/target-broken
.PHONY: chaos chaos-broken soak
chaos: images
	cargo build -p flotilla -p flotilla-tests --bin flotilla --bin chaos
	SEEDS=$(SEEDS) $(CARGO_TARGET_DIR)/debug/chaos

# The long run, never part of `make test`: 20 seeds (about 20 minutes).
soak:
	$(MAKE) chaos SEEDS=20

# Proof the checker can fail: a build that acknowledges writes before they commit
# (feature unsafe-early-ack, its own target dir) must be caught within a few seeds.
chaos-broken: images
	CARGO_TARGET_DIR=$(BROKEN_TARGET) cargo build -p flotilla --features flotilla-node/unsafe-early-ack
	cargo build -p flotilla-tests --bin chaos
	FLOTILLA_BIN=$(BROKEN_TARGET)/debug/flotilla CHAOS_EXPECT=violation SEEDS=$(SEEDS) \
		$(CARGO_TARGET_DIR)/debug/chaos
