#!/usr/bin/env bash
# The Spark pipeline's test alone (tests/integration/test_pipeline_spark.py: Delta Lake and
# Iceberg, both formats). scripts/test.sh (and so `bash .ci/run`) runs it with the other
# pipelines' tests in one integration stage (WALSHIP_PIPELINES_PG, default 18): 3-7
# minutes on a 2-core machine, most of it Delta's MERGE (docs/development.md).
#
#   scripts/test-spark.sh            # PostgreSQL on PATH ($PG_CONFIG picks another)
#
# Unless WALSHIP_SKIP_DEPS=1 it installs the system packages (scripts/install-deps.sh) and
# the tests' Python packages, pyspark and pytest among them (tests/requirements.txt, a
# superset of pipelines/spark/requirements.txt); unless WALSHIP_SKIP_BUILD=1 it builds and
# installs walship (pipelines/common/prepare.sh's build step; WALSHIP_BUILD_DIR, default
# build-spark). It fails, never skips, when Spark, the jars (Maven Central, once) or the
# broker are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ ${WALSHIP_SKIP_DEPS:-0} != 1 ]]; then
    scripts/install-deps.sh
    pip_install() { python3 -m pip install -q --disable-pip-version-check "$@"; }
    pip_install -r tests/requirements.txt ||
        pip_install --break-system-packages -r tests/requirements.txt
fi
BUILD=${WALSHIP_BUILD_DIR:-build-spark}
# the build and install only (the dependencies were installed above)
WALSHIP_SKIP_DEPS=1 WALSHIP_BUILD_DIR="$BUILD" pipelines/common/prepare.sh spark
WALSHIP_BUILD_DIR="$BUILD" exec python3 -m pytest -v -p no:cacheprovider tests/integration/test_pipeline_spark.py "$@"
