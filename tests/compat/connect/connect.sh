#!/usr/bin/env bash
# The Kafka Connect worker and the Debezium PostgreSQL connector of tests/compat and
# bench/debezium, from jars that Maven resolves from Maven Central and caches
# ($WALSHIP_CACHE, default ~/.cache/walship, under connect-<version>/):
#
#   connect.sh fetch          warm the cache (scripts/install-deps.sh runs this)
#   connect.sh classpath      print the worker's classpath (resolving it first)
#   connect.sh plugin-path    print the worker's plugin.path (Debezium's directory is in it)
#
# The commands are the test harness's (tests/lib/walship_testlib/connect.py, which starts
# and stops workers for the tests: KafkaConnect).
set -euo pipefail
lib="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/lib"
PYTHONPATH="$lib${PYTHONPATH:+:$PYTHONPATH}" exec "${PYTHON:-python3}" -m walship_testlib connect "$@"
