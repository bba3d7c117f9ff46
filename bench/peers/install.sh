#!/usr/bin/env bash
# Installs the peers of `tickwire bench compare` from the package registries, at the
# versions pinned here (package.json + package-lock.json, Cargo.lock). Idempotent: a peer
# already installed at its pinned version is left alone.
#
#   bun/        @oven/bun-linux-x64 (npm), the Bun binary; Bun.serve + server.publish
#   node/       ws (npm), run with the machine's node (apt's nodejs when missing)
#   naive-rust/ tokio-tungstenite + tokio broadcast, cargo build --release
#   floor/      the load generator's latency floor (std only), cargo build --release
#
# Usage: bench/peers/install.sh [bun] [node] [naive-rust] [floor]   (default: all four)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
peers=("$@")
[ ${#peers[@]} -eq 0 ] && peers=(bun node naive-rust floor)

need_npm() {
  if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
    echo "install.sh: node/npm missing, installing Debian's nodejs and npm" >&2
    apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null
  fi
}

# npm ci when node_modules does not match the lock file (npm writes its own copy of the
# lock into node_modules/.package-lock.json).
npm_install() {
  local dir="$here/$1"
  if [ -f "$dir/node_modules/.package-lock.json" ] &&
     cmp -s <(grep -v '"name": "tickwire-peer' "$dir/package-lock.json" | grep '"version"') \
            <(grep -v '"name": "tickwire-peer' "$dir/node_modules/.package-lock.json" | grep '"version"'); then
    echo "install.sh: $1 up to date"
    return
  fi
  need_npm
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  echo "install.sh: $1 installed"
}

for p in "${peers[@]}"; do
  case "$p" in
    bun)
      npm_install bun
      "$here/bun/node_modules/@oven/bun-linux-x64/bin/bun" --version >/dev/null
      ;;
    node)
      npm_install node
      ;;
    naive-rust | floor)
      # cargo is quick when nothing changed.
      cargo build --release --quiet --locked \
        --manifest-path "$here/$p/Cargo.toml" --target-dir "$here/$p/target"
      echo "install.sh: $p built"
      ;;
    *)
      echo "install.sh: unknown peer $p (bun, node, naive-rust, floor)" >&2
      exit 2
      ;;
  esac
done
