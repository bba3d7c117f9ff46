#!/usr/bin/env bash
# The whole test suite, installing what the tests need when it is missing.
# Usage: scripts/test.sh        (from the repository root; CI runs the same)
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n==> %s\n' "$*"; }

# Python client library for the third-party smoke test (PyPI).
if ! python3 -c 'import websockets' 2>/dev/null; then
  say "installing Python websockets"
  python3 -m pip install --quiet --disable-pip-version-check 'websockets>=12,<16'
fi

say "cargo test --workspace"
cargo test --workspace --all-targets
cargo test --workspace --doc

say "loom: ring interleavings"
if [ -f engine/tests/loom_ring.rs ]; then
  RUSTFLAGS="--cfg tickwire_loom" CARGO_TARGET_DIR=target/loom \
    cargo test -p tickwire-engine --test loom_ring --release
fi

say "smoke: the tickwire binary with a Python websockets client"
cargo build -p tickwire
python3 tests/smoke.py target/debug/tickwire

say "all tests passed"
