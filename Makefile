# stellar-peer-injector: the two commands are `make demo` (main job) and `make test` (tests).
SHELL := bash
TESTBED := tests/testbed/testbed

.PHONY: test demo deps build lint unit integration bed-up bed-down bed-status clean-bed

## Installs what the project needs on a fresh Debian machine with Go and Rust.
deps:
	$(TESTBED) build

build:
	cargo build --release --locked

lint:
	cargo fmt --check
	cargo clippy --locked --all-targets -- -D warnings

unit:
	cargo test --locked --lib --bins

## Unit and integration tests; the integration tests bring the real control plane up and down.
integration: deps
	cargo test --locked --test integration

## The test command: lint, unit tests, integration tests on the real control plane.
test: deps lint
	cargo test --locked --all-targets

## The main job: control plane, injector, example StellarNodes, injected peers, a rollout.
demo: deps
	cargo build --locked
	./examples/demo.sh

bed-up: deps
	$(TESTBED) up

bed-down:
	$(TESTBED) down

bed-status:
	$(TESTBED) status
