#!/usr/bin/env bash
# Runs every walship test: builds and installs the module, then the unit tests
# (GoogleTest, no server), the regression tests (pg_regress on a throwaway cluster) and
# the integration tests (throwaway PostgreSQL + a real local Kafka broker; they fail,
# never skip, when the broker cannot start).
# Installing packages and into PostgreSQL's directories needs root (or sudo).
set -euo pipefail
cd "$(dirname "$0")/.."

# A fresh machine first gets what the build and the tests need (quick when present).
[[ ${WALSHIP_SKIP_DEPS:-0} == 1 ]] || scripts/install-deps.sh

if git rev-parse --git-dir >/dev/null 2>&1; then
    echo "== format (one .clang-format for C and C++)"
    git ls-files '*.c' '*.h' '*.cpp' '*.hpp' | xargs clang-format --dry-run --Werror
fi

BUILD=${WALSHIP_BUILD_DIR:-build}
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DWALSHIP_WERROR=ON
cmake --build "$BUILD" -j"$(nproc)"
SUDO=; [[ $(id -u) -eq 0 ]] || SUDO=sudo  # PostgreSQL's directories belong to root
$SUDO cmake --install "$BUILD"

echo "== unit tests"
# The sink's real-broker tests get a broker of their own (their crash test kills it).
kafka_dir=$(mktemp -d /tmp/walship-unit-kafka.XXXXXX)
trap 'tests/kafka/kafka.sh stop "$kafka_dir" >/dev/null 2>&1 || true; rm -rf "$kafka_dir"' EXIT
WALSHIP_TEST_KAFKA=$(tests/kafka/kafka.sh start "$kafka_dir")
export WALSHIP_TEST_KAFKA WALSHIP_TEST_KAFKA_CRASH_DIR=$kafka_dir
# The broker-crash test kills and restarts that broker: run it alone, after the rest.
crash=SinkRealKafka.BrokerCrash
ctest --test-dir "$BUILD" --output-on-failure --no-tests=error -j"$(nproc)" -E "$crash" | tee "$BUILD/ctest.log"
ctest --test-dir "$BUILD" --output-on-failure --no-tests=error -R "$crash" | tee -a "$BUILD/ctest.log"
# A skipped test is a test that did not run: it must not pass as green.
if grep -q "(Skipped)" "$BUILD/ctest.log"; then
    echo "unit tests: some tests were skipped" >&2
    exit 1
fi
tests/kafka/kafka.sh stop "$kafka_dir"

echo "== regression tests"
tests/run_regress.sh

echo "== integration tests"
WALSHIP_BUILD_DIR="$BUILD" python3 -m pytest -v -p no:cacheprovider tests/integration
