# The two entry points of the README. Both install what is missing first.
#   make demo   build and mount a demo workspace (embedded leader), foreground
#   make test   formatting, lints, docs, and every test suite
# Tests run in the `ci` profile (optimized, debug assertions on), so the slow
# mount suites finish in time and invariants are still asserted.

CARGO ?= cargo
PROFILE ?= ci

.PHONY: demo test bench

demo:
	tools/scripts/setup.sh
	$(CARGO) build --release -p hsfs-tools
	tools/scripts/demo.sh

test:
	tools/scripts/setup.sh --test
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --profile $(PROFILE) -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps --profile $(PROFILE) -q
	$(CARGO) build -p hsfs-tools --profile $(PROFILE)
	$(CARGO) test --workspace --all-targets --profile $(PROFILE)
	tools/scripts/fuzz.sh 20

bench:
	tools/scripts/setup.sh --bench
	$(CARGO) build --release -p hsfs-tools
	target/release/hsfs-bench engine
	target/release/hsfs-bench mount
	target/release/hsfs-bench scale
	target/release/hsfs-bench cluster
