#!/usr/bin/env bash
# The whole test suite, installing what the tests need when it is missing.
# Usage: scripts/test.sh        (from the repository root; CI runs the same)
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n==> %s\n' "$*"; }

# Python libraries for the third-party smoke test and clients/python (PyPI): a WebSocket
# client (13+: its asyncio API) and the reference Prometheus text parser.
if ! python3 -c 'import websockets.asyncio.client, prometheus_client' 2>/dev/null; then
  say "installing Python websockets and prometheus-client"
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
    'websockets>=13,<16' 'prometheus-client>=0.17,<1'
fi
# kosoku (PyPI, pinned): runs the Autobahn TestSuite's own case files (tests/autobahn.py).
if ! python3 -c 'import kosoku' 2>/dev/null; then
  say "installing kosoku 0.1.0 (Autobahn conformance runner)"
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
    'kosoku==0.1.0'
fi

# The cluster test (tools/tests/cluster.rs) runs Debian's NATS server (JetStream is in
# every 2.x). The package also installs a systemd unit; the test starts its own server on
# a free loopback port and never uses that one.
if ! command -v nats-server >/dev/null 2>&1 && [ ! -x /usr/sbin/nats-server ]; then
  say "installing Debian's nats-server"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nats-server >/dev/null
fi

say "cargo test --workspace"
cargo test --workspace --all-targets
cargo test --workspace --doc

# Soak (about 2 minutes): churn and slow clients against the real binary; RSS and file
# descriptors flat, every remaining client correct (tools/tests/soak.rs, ignored by a
# plain cargo test for its length).
say "soak: client churn and slow clients against the real binary"
cargo test -p tickwire --test soak -- --ignored

say "loom: ring interleavings"
if [ -f engine/tests/loom_ring.rs ]; then
  RUSTFLAGS="--cfg tickwire_loom" CARGO_TARGET_DIR=target/loom \
    cargo test -p tickwire-engine --test loom_ring --release
fi

say "smoke: the tickwire binary with a Python websockets client"
cargo build -p tickwire
bin="${CARGO_TARGET_DIR:-target}/debug/tickwire"
python3 tests/smoke.py "$bin"

# RFC 6455 conformance: the Autobahn client-to-server cases (minus 9.*, 12.*, 13.*)
# against the real binary's /echo test endpoint; one summary line, exit 1 on any failure.
say "autobahn: RFC 6455 conformance (kosoku)"
python3 tests/autobahn.py "$bin"

# The dashboard in Debian's Chromium, headless, driven by playwright-core (npm, pinned
# in tests/browser/package-lock.json; it downloads no browser of its own).
say "browser: the dashboard in headless Chromium"
if [ ! -x /usr/bin/chromium ]; then
  say "installing Debian's chromium"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
if [ ! -f tests/browser/node_modules/playwright-core/package.json ]; then
  say "installing the browser tests' npm packages (npm ci)"
  (cd tests/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
fi
TICKWIRE_BIN="$bin" node --test tests/browser/

# The client libraries (clients/js, clients/python): unit tests, and their integration
# tests against the binary built above (engine restart, frozen relay, blip).
say "clients/js: node --test (unit, and against the real binary)"
if [ ! -f clients/js/node_modules/ws/package.json ]; then
  say "installing clients/js's dev packages (npm ci: ws, pinned in its package-lock.json)"
  (cd clients/js && npm ci --no-audit --no-fund --loglevel=error)
fi
if [ "${bin#/}" != "$bin" ]; then abs_bin="$bin"; else abs_bin="$PWD/$bin"; fi
(cd clients/js && TICKWIRE_BIN="$abs_bin" node --test test/*.test.mjs)
say "clients/python: pytest (unit, and against the real binary)"
if ! python3 -c 'import pytest' 2>/dev/null; then
  say "installing pytest"
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore 'pytest>=7,<10'
fi
(cd clients/python && TICKWIRE_BIN="$abs_bin" python3 -m pytest -q tests/)

say "all tests passed"
