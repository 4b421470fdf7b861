#!/usr/bin/env bash
# Runs every walship test: builds and installs the module, then the unit tests
# (GoogleTest, no server), the regression tests (pg_regress on a throwaway cluster) and
# the integration tests (throwaway PostgreSQL + a real local Kafka broker; they fail,
# never skip, when the broker cannot start).
# Installing into PostgreSQL's directories needs root (or write access to them).
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=${WALSHIP_BUILD_DIR:-build}
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DWALSHIP_WERROR=ON
cmake --build "$BUILD" -j"$(nproc)"
cmake --install "$BUILD"

echo "== unit tests"
ctest --test-dir "$BUILD" --output-on-failure -j"$(nproc)"

echo "== regression tests"
tests/run_regress.sh

echo "== integration tests"
WALSHIP_BUILD_DIR="$BUILD" python3 -m pytest -v -p no:cacheprovider tests/integration
