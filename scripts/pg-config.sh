#!/usr/bin/env bash
# Prints the pg_config of PostgreSQL MAJOR: Debian's for 15, scripts/install-pg.sh's
# for 16, 17 and 18.
set -euo pipefail
major=${1:?usage: scripts/pg-config.sh MAJOR}
if [[ $major == 15 ]]; then
    echo /usr/lib/postgresql/15/bin/pg_config
else
    echo "${WALSHIP_PG_ROOT:-/opt/walship/pg}/$major/bin/pg_config"
fi
