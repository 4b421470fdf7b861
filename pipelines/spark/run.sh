#!/usr/bin/env bash
# PostgreSQL → walship → Kafka → Spark Structured Streaming → Delta Lake and Iceberg, in one
# command, on a fresh Debian 12 machine: installs what it needs (scripts/install-deps.sh:
# Java 17 and Maven among the rest; then pyspark from PyPI, pinned in requirements.txt;
# the Kafka source, Delta and Iceberg jars are fetched by Maven from Maven Central on the
# first run into ~/.cache/walship), builds and installs walship into the PostgreSQL that
# pg_config names ($PG_CONFIG, else the one on PATH), and runs pipelines/spark/run.py: a
# throwaway PostgreSQL, the test Kafka broker, Spark local[2], a stream with its snapshot,
# two workload rounds, and the Delta and Iceberg tables next to PostgreSQL's, compared row
# by row and column by column.
#
#   pipelines/spark/run.sh [--format json|protobuf|both] [--rounds N] [--events N] [--quiet]
#
# WALSHIP_SKIP_DEPS=1 skips the installation steps, WALSHIP_SKIP_BUILD=1 the build
# (walship is then already installed), WALSHIP_BUILD_DIR picks the build directory.
set -euo pipefail
cd "$(dirname "$0")/../.."
pipelines/common/prepare.sh spark
exec python3 pipelines/spark/run.py "$@"
