#!/usr/bin/env bash
# The whole test suite, installing what the tests need when it is missing.
# Usage: scripts/test.sh        (from the repository root; CI runs the same)
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n==> %s\n' "$*"; }

# Python libraries for the third-party smoke test (PyPI): a WebSocket client and the
# reference Prometheus text parser.
if ! python3 -c 'import websockets, prometheus_client' 2>/dev/null; then
  say "installing Python websockets and prometheus-client"
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
    'websockets>=12,<16' 'prometheus-client>=0.17,<1'
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
