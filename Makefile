# stellar-peer-injector: the two commands are `make demo` (main job) and `make test` (tests).
SHELL := bash
TESTBED := tests/testbed/testbed

.PHONY: image rules-test test demo demo-multicluster deps deny-deps machete-deps fetch build lint unit integration fuzz fuzz-short fuzz-deps bed-up bed-down bed-status crowd-start crowd-stop crowd-status

## Installs what the project needs on a fresh Debian machine with Go and Rust.
deps:
	$(TESTBED) build

build:
	cargo build --release --locked

## The injector's OCI image without Docker or a registry (image/build reads the Dockerfile):
## target/image/stellar-peer-injector.oci.tar, for `ctr images import` or `podman load`.
## IMAGE_PROFILE=dev packs the debug binary (stripped) instead of the release one.
IMAGE_PROFILE ?= release
IMAGE_OUT ?= target/image/stellar-peer-injector.oci.tar
image:
	cargo build --locked --profile $(IMAGE_PROFILE) --bin stellar-peer-injector
	image/build target/$(if $(filter dev,$(IMAGE_PROFILE)),debug,$(IMAGE_PROFILE))/stellar-peer-injector $(IMAGE_OUT)

## The workspace: the injector and its dev-only test kit (testkit/).
lint: deny-deps machete-deps fetch
	cargo fmt --all --check
	cargo clippy --locked --workspace --all-targets -- -D warnings
	cargo deny --offline --workspace check licenses bans sources
	cargo machete --skip-target-dir

## Downloads every locked crate, for every platform in Cargo.lock: `cargo metadata`
## (and so cargo-deny) needs them all, while build and test fetch only this platform's.
## Where the registry is unreachable, the same check runs offline against the cache.
fetch:
	cargo fetch --locked || cargo fetch --locked --offline

deny-deps:
	command -v cargo-deny >/dev/null || cargo install cargo-deny --version 0.20.2 --locked

## Unused dependencies (offline: it reads the sources, not the registry).
machete-deps:
	command -v cargo-machete >/dev/null || cargo install cargo-machete --version 0.9.2 --locked

unit:
	cargo test --locked --workspace --lib --bins

## Unit and integration tests; the integration tests bring the real control plane up and down.
integration: deps
	cargo test --locked --test integration

## The chart's alert rules: rendered with the bed's helm, checked and unit-tested with promtool.
rules-test: deps
	tests/prometheus/test-rules

## The test command: lint, alert rule tests, unit tests, integration tests on the real
## control plane, a short fuzz run.
test: deps lint rules-test
	cargo test --locked --workspace --all-targets
	$(MAKE) fuzz-short

# Fuzzing (cargo fuzz, libFuzzer). Works on stable Rust with --sanitizer none; the build is
# cached outside the repository so CI's fresh clones reuse it.
FUZZ_TARGET_DIR ?= $(HOME)/.cache/stellar-peer-injector/fuzz-target
FUZZ_SECONDS ?= 600
FUZZ_RUN = cd fuzz && mkdir -p corpus/admission && cargo fuzz run --sanitizer none --target-dir $(FUZZ_TARGET_DIR) \
	admission corpus/admission seeds/admission -- -dict=admission.dict

fuzz-deps:
	command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --version 0.13.2 --locked

## A short fuzz run (part of `make test`).
fuzz-short: fuzz-deps
	$(FUZZ_RUN) -max_total_time=60

## The long fuzz run (FUZZ_SECONDS, default 10 minutes).
fuzz: fuzz-deps
	$(FUZZ_RUN) -max_total_time=$(FUZZ_SECONDS)

## The main job: control plane, injector, example StellarNodes, injected peers, a rollout.
demo: deps
	cargo build --locked
	./examples/demo.sh

## Two linked clusters side by side: peers across them, and rollouts that take turns.
demo-multicluster: deps
	cargo build --locked
	./examples/demo-multicluster.sh

bed-up: deps
	$(TESTBED) up

bed-down:
	$(TESTBED) down

bed-status:
	$(TESTBED) status

## A crowded machine (tests/testbed/README.md): a second bed with churn on it;
## `make crowd-start CROWD_ARGS=--build` also loops a release build of a copy of the repo.
crowd-start: deps
	tests/testbed/crowd start $(CROWD_ARGS)

crowd-stop:
	tests/testbed/crowd stop

crowd-status:
	tests/testbed/crowd status
