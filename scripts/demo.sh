#!/usr/bin/env bash
# The walship demo on local defaults: installs what it needs, builds and installs the
# module, starts a throwaway PostgreSQL and a local Kafka broker, creates a small shop
# schema and a stream, runs a short workload, prints the change events read back from
# Kafka as they arrive, and stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
BUILD=${WALSHIP_BUILD_DIR:-build}
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DWALSHIP_TESTS=OFF >/dev/null
cmake --build "$BUILD" -j"$(nproc)" >/dev/null
SUDO=; [[ $(id -u) -eq 0 ]] || SUDO=sudo  # PostgreSQL's directories belong to root
$SUDO cmake --install "$BUILD" >/dev/null
exec python3 demo/shop_demo.py "$@"
