#!/usr/bin/env bash
# run_regress.sh: the output plugin's pg_regress suite against a throwaway cluster.
#
#   tests/run_regress.sh [test ...]   (default: every tests/regress/sql/*.sql)
#
# The runner is the test harness's (tests/lib/walship_testlib/regress.py): a throwaway
# initdb cluster on a free loopback port, configured for logical decoding
# (logical_decoding_work_mem=64kB, so the spill path runs), pg_regress --use-existing
# --bindir against it, regression.diffs and the server log's end on failure; the exit
# status is pg_regress's (2: pg_regress missing or the cluster did not start).
# walship must be installed in the PostgreSQL that pg_config (or $PG_CONFIG) names.
# Environment: PG_CONFIG; WALSHIP_EXTRA_CONF, extra postgresql.conf lines;
# KEEP_CLUSTER=1 leaves the cluster's directory behind for inspection.
set -euo pipefail
lib="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib"
PYTHONPATH="$lib${PYTHONPATH:+:$PYTHONPATH}" exec "${PYTHON:-python3}" -m walship_testlib regress "$@"
