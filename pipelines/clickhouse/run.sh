#!/usr/bin/env bash
# PostgreSQL → walship → Kafka → ClickHouse, in one command, on a fresh Debian 12 machine:
# installs what it needs (scripts/install-deps.sh, then chdb from PyPI), builds and installs
# walship into the PostgreSQL that pg_config names ($PG_CONFIG, else the one on PATH),
# and runs pipelines/clickhouse/run.py: a throwaway PostgreSQL, the test Kafka broker, an
# embedded ClickHouse (chDB), a stream with its snapshot, two workload rounds, and
# ClickHouse's tables next to PostgreSQL's, compared row by row and column by column.
#
#   pipelines/clickhouse/run.sh [--format json|protobuf|both] [--rounds N] [--events N] [--quiet]
#
# WALSHIP_SKIP_DEPS=1 skips the installation steps, WALSHIP_SKIP_BUILD=1 the build
# (walship is then already installed), WALSHIP_BUILD_DIR picks the build directory.
set -euo pipefail
cd "$(dirname "$0")/../.."
pipelines/common/prepare.sh clickhouse
exec python3 pipelines/clickhouse/run.py "$@"
