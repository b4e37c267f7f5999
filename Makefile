# noexecd: build, run, test. `make test` installs what it needs when missing.
SHELL := /bin/bash
CARGO ?= cargo
BIN := target/release/noexecd
CONFIG ?= config/noexecd.toml
export CARGO_TERM_COLOR ?= never

# Extra test targets appended by included makefiles (packaging checks, the booted-systemd test).
TEST_EXTRA :=
-include packaging/packaging.mk
-include packaging/kubernetes/kubernetes.mk

# `noexecd --version` names the commit it was built from (build.rs).
export NOEXECD_COMMIT ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null)

.PHONY: all build-deps build run demo test test-deps fmt-check clippy unit-tests integration-tests test-in-container check-config docs-check bench clean

all: build

## protoc (protobuf-compiler) is the one build tool besides Rust; installed when missing (needs root).
build-deps:
	@command -v protoc >/dev/null || bash scripts/install-deps.sh build

build: build-deps
	$(CARGO) build --release --locked

## Guard this host with the shipped default policy (needs root). Ctrl-C stops it and removes the marks.
run: build
	@[ "$$(id -u)" = 0 ] || { echo "make run: noexecd needs root (CAP_SYS_ADMIN) for fanotify; try: sudo make run" >&2; exit 1; }
	$(BIN) check --config $(CONFIG)
	@mkdir -p /var/log/noexecd
	RUST_LOG=$${RUST_LOG:-info} $(BIN) run --config $(CONFIG)

## Show a denial and its alert in a private mount namespace; the host's /tmp is untouched.
demo: build
	@[ "$$(id -u)" = 0 ] || { echo "make demo: needs root; try: sudo make demo" >&2; exit 1; }
	timeout 60 unshare --mount --propagation private -- bash scripts/demo.sh $(BIN)

## Tools `make test` needs; installed when missing. (`make package-deps` installs the packaging tools.)
test-deps:
	@bash scripts/install-deps.sh test

test: test-deps docs-check fmt-check clippy check-config unit-tests integration-tests test-in-container demo $(TEST_EXTRA)
	@echo "make test: all checks passed"

## Every relative link of the Markdown files (README, docs/, ...) points to an existing file and heading.
docs-check:
	python3 scripts/docs-check.py

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --locked --all-targets -- -D warnings

check-config: build
	$(BIN) check --config $(CONFIG) >/dev/null

unit-tests:
	$(CARGO) test --locked --lib --bins

# The tests drive the release daemon ($(BIN)); the test binary itself (tests/it, one module per area) is
# built without LTO (debug profile).
integration-tests: build
	NOEXECD_BIN=$(abspath $(BIN)) timeout 1800 $(CARGO) test --locked --test it -- --test-threads=1

## The same integration tests inside a podman container given CAP_SYS_ADMIN (not --privileged), as CI jobs in
## containers run them: docs/testing.md "Tests in a container" says with what else, and which tests skip there and why.
## IT_ARGS passes arguments to the test binary (a filter: IT_ARGS='enforce::').
IT_ARGS ?=
test-in-container: build test-deps
	it=$$($(CARGO) test --locked --no-run --test it --message-format=json | \
	    jq -r 'select(.reason == "compiler-artifact" and .target.name == "it" and .executable != null) | .executable') && \
	    bash scripts/test-in-container.sh "$$it" $(abspath $(BIN)) --test-threads=1 $(IT_ARGS)

## Benchmarks (root; not part of `make test`): noexecd against no guard, noexec, a minimal C fanotify responder
## and fapolicyd, in a private mount namespace. Prints the ratio table, writes docs/benchmarks.md and bench/plot.png.
bench: build
	bash bench/run.sh $(BIN)

clean:
	$(CARGO) clean

