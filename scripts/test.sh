#!/usr/bin/env bash
# Runs every walship test, on every supported PostgreSQL: builds and installs the module,
# then the unit tests (GoogleTest, no server, no broker), the regression tests (pg_regress
# on a throwaway cluster) and the integration tests (throwaway PostgreSQL + a real local
# Kafka broker; they fail, never skip, when the broker cannot start).
#
# PostgreSQL 15 is Debian's; 16, 17 and 18 come from scripts/install-pg.sh. Per version:
#   - 15 and 18: build (warnings as errors), regression suite, the whole integration
#     suite; on 18 also the PGXS build;
#   - 16 and 17: build, regression suite, and the integration smoke set (the SQL API,
#     pg_recvlogical, events through a stream, the stream's tables, failover, snapshot
#     read events: the watermarks are written differently before 17);
#   - the first version (15) also builds the GoogleTest executables: the unit tests run
#     after its build (ctest -LE broker), the sink against a real broker (ctest -L broker)
#     in its integration stage. The format check runs once, first.
#   - once, right after PostgreSQL 15's integration tests: tests/compat, the real
#     Debezium PostgreSQL connector beside walship on the same changes, every record
#     compared. A failure there fails the run at the end, after the other versions ran.
#   - the fault suite's exactly-once rounds run in the first whole-suite stage only;
#   - the pipelines' tests (tests/integration/test_pipeline_*.py: a downstream system
#     rebuilds the tables from the events, which do not depend on the server's version)
#     run in one whole-suite stage only, PostgreSQL 18's.
# Environment: WALSHIP_PG_VERSIONS (default "15 16 17 18") picks the versions,
# WALSHIP_PG_FULL (default "15 18") those that get the whole integration suite,
# WALSHIP_COMPAT_PG (default 15) the one after whose integration tests tests/compat runs,
# WALSHIP_PIPELINES_PG (default 18) the one whose integration stage runs the pipelines'.
# Installing packages and into PostgreSQL's directories needs root (or sudo).
set -euo pipefail
cd "$(dirname "$0")/.."

VERSIONS=${WALSHIP_PG_VERSIONS:-15 16 17 18}
FULL=" ${WALSHIP_PG_FULL:-15 18} "
COMPAT_PG=${WALSHIP_COMPAT_PG:-15}
PIPELINES_PG=${WALSHIP_PIPELINES_PG:-18}
compat_failed=no
first_full=
for v in $VERSIONS; do
    if [[ -z $first_full && $FULL == *" $v "* ]]; then first_full=$v; fi
done
SMOKE=(tests/integration/test_stream_sql.py tests/integration/test_recvlogical.py
       tests/integration/test_stream_events.py tests/integration/test_stream_tables.py
       tests/integration/test_failover.py tests/integration/test_snapshot.py::test_read_events)

# A fresh machine first gets what the build and the tests need (quick when present).
if [[ ${WALSHIP_SKIP_DEPS:-0} != 1 ]]; then
    scripts/install-deps.sh
fi
needs_pg=()
for v in $VERSIONS; do
    [[ $v == 15 || -x $(scripts/pg-config.sh "$v") ]] || needs_pg+=("$v")
done
((${#needs_pg[@]} == 0)) || scripts/install-pg.sh "${needs_pg[@]}"

if git rev-parse --git-dir >/dev/null 2>&1; then
    echo "== format (one .clang-format for C and C++)"
    git ls-files '*.c' '*.h' '*.cpp' '*.hpp' | xargs clang-format --dry-run --Werror
fi

SUDO=; [[ $(id -u) -eq 0 ]] || SUDO=sudo  # PostgreSQL's directories belong to root
BASE_BUILD=${WALSHIP_BUILD_DIR:-build}
t0=$SECONDS
unit_done=no

kafka_dir=
stop_test_kafka() {
    if [[ -n $kafka_dir ]]; then
        tests/kafka/kafka.sh stop "$kafka_dir" >/dev/null 2>&1 || true
        rm -rf "$kafka_dir"
        kafka_dir=
    fi
}
trap stop_test_kafka EXIT

# A skipped test is a test that did not run: it must not pass as green.
no_skips() {
    if grep -q "(Skipped)" "$1"; then
        echo "$2: some tests were skipped" >&2
        exit 1
    fi
}

unit_tests() {
    local build=$1
    echo "== unit tests"
    ctest --test-dir "$build" --output-on-failure --no-tests=error -j"$(nproc)" -LE broker | tee "$build/ctest.log"
    no_skips "$build/ctest.log" "unit tests"
    # the encode benchmark still builds and encodes (bench/encode; its timings are not checked)
    cmake --build "$build" --target walship_encode_bench -j"$(nproc)" >/dev/null
    "$build/walship_encode_bench" 2000 1
}

# The sink against a real broker (ctest label "broker"), with a broker of its own that
# the test harness starts (its crash test kills and restarts it: run alone, last).
sink_broker_tests() {
    local build=$1 crash=SinkRealKafka.BrokerCrash
    echo "== PostgreSQL $v: the Kafka sink against a real broker"
    kafka_dir=$(mktemp -d /tmp/walship-sink-kafka.XXXXXX)
    WALSHIP_TEST_KAFKA=$(tests/kafka/kafka.sh start "$kafka_dir")
    export WALSHIP_TEST_KAFKA WALSHIP_TEST_KAFKA_CRASH_DIR=$kafka_dir
    ctest --test-dir "$build" --output-on-failure --no-tests=error -L broker -E "$crash" | tee "$build/ctest-broker.log"
    ctest --test-dir "$build" --output-on-failure --no-tests=error -L broker -R "$crash" | tee -a "$build/ctest-broker.log"
    no_skips "$build/ctest-broker.log" "sink broker tests"
    tests/kafka/kafka.sh stop "$kafka_dir"
    stop_test_kafka
    unset WALSHIP_TEST_KAFKA WALSHIP_TEST_KAFKA_CRASH_DIR
}

# The PGXS build, in a copy of the tree (PGXS builds next to the sources): it must build
# and export exactly what the CMake build exports.
pgxs_build() {
    local pg_config=$1 cmake_so=$2 tree
    echo "== PGXS build ($("$pg_config" --version))"
    tree=$(mktemp -d /tmp/walship-pgxs.XXXXXX)
    git ls-files | tar -cf - -T - | tar -xf - -C "$tree"
    make -s -C "$tree" -f Makefile.pgxs PG_CONFIG="$pg_config" -j"$(nproc)" >/dev/null
    if ! diff <(nm -D --defined-only "$tree/walship.so" | awk '{print $3}' | sort) \
              <(nm -D --defined-only "$cmake_so" | awk '{print $3}' | sort); then
        echo "PGXS build: walship.so exports other symbols than the CMake build's" >&2
        exit 1
    fi
    rm -rf "$tree"
}

for v in $VERSIONS; do
    pg_config=$(scripts/pg-config.sh "$v")
    [[ -x $pg_config ]] || { echo "no pg_config for PostgreSQL $v at $pg_config" >&2; exit 1; }
    export PG_CONFIG=$pg_config
    build=$BASE_BUILD
    [[ $v == 15 ]] || build=$BASE_BUILD-pg$v
    echo "== PostgreSQL $v: build ($("$pg_config" --version), $build)"
    tests_opt=ON
    [[ $unit_done == no ]] || tests_opt=OFF
    cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DWALSHIP_WERROR=ON \
        -DPG_CONFIG="$pg_config" -DWALSHIP_TESTS=$tests_opt >/dev/null
    cmake --build "$build" -j"$(nproc)"
    $SUDO cmake --install "$build" >/dev/null

    if [[ $unit_done == no ]]; then
        unit_tests "$build"
        unit_done=yes
    fi
    if [[ $v == 18 ]]; then
        pgxs_build "$pg_config" "$build/walship.so"
    fi

    echo "== PostgreSQL $v: regression tests"
    tests/run_regress.sh

    if [[ $tests_opt == ON ]]; then
        sink_broker_tests "$build"
    fi
    if [[ $FULL == *" $v "* ]]; then
        echo "== PostgreSQL $v: integration tests"
        pipelines=()
        # (in every whole-suite stage when PIPELINES_PG gets none in this run)
        if [[ $v != "$PIPELINES_PG" && " $VERSIONS " == *" $PIPELINES_PG "* &&
              $FULL == *" $PIPELINES_PG "* ]]; then
            pipelines=(--ignore-glob='tests/integration/test_pipeline_*.py')
        fi
        # the fault suite's exactly-once rounds (minutes, and no server-version code of
        # their own) run in the first whole-suite stage only
        if [[ $v != "$first_full" ]]; then
            pipelines+=(-k 'not (test_faults and exactly_once)')
        fi
        WALSHIP_BUILD_DIR="$build" python3 -m pytest -v -p no:cacheprovider "${pipelines[@]}" tests/integration
    else
        echo "== PostgreSQL $v: integration smoke tests"
        WALSHIP_BUILD_DIR="$build" python3 -m pytest -v -p no:cacheprovider "${SMOKE[@]}"
    fi
    if [[ $v == "$COMPAT_PG" ]]; then
        # Its conftest fails the run on a skipped test, as the integration suite's does.
        echo "== PostgreSQL $v: compatibility with the real Debezium connector (tests/compat)"
        if ! WALSHIP_BUILD_DIR="$build" python3 -m pytest -v -p no:cacheprovider tests/compat; then
            compat_failed=yes
            echo "== PostgreSQL $v: tests/compat FAILED (the run goes on, and fails at the end)"
        fi
    fi
    echo "== PostgreSQL $v: passed ($((SECONDS - t0)) s so far)"
done
if [[ $compat_failed == yes ]]; then
    echo "tests/compat failed: walship's records differ from Debezium's (its stage above)" >&2
    exit 1
fi
