"""The output plugin's pg_regress suite against a throwaway cluster (tests/run_regress.sh).

A ``PgCluster`` without preloaded libraries, configured for logical decoding
(wal_level=logical, logical_decoding_work_mem=64kB so that the spill path runs, walship
in output_plugin_libraries where the server has that setting) and for stable output;
every tests/regress/sql/*.sql (or the tests named) runs against it with
``pg_regress --use-existing``; the cluster is stopped and removed. Exit status: that of
pg_regress (regression.diffs and the end of the server log are printed on failure);
2 when pg_regress is missing or the cluster does not start.

walship must be installed (cmake --install <build dir>) in the PostgreSQL that
pg_config (or $PG_CONFIG) names. Run as root, the cluster runs as the postgres OS user.

Environment: PG_CONFIG; WALSHIP_EXTRA_CONF, extra postgresql.conf lines (e.g.
dynamic_library_path to test an uninstalled build); KEEP_CLUSTER=1 (or
WALSHIP_KEEP_TMP=1) leaves the cluster's directory behind for inspection.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .cluster import PgCluster, pg_config
from .common import REPO_ROOT

REGRESS_DIR = REPO_ROOT / "tests" / "regress"
DBNAME = "walship_regression"
SETTINGS = {
    "max_replication_slots": 10,
    "max_wal_senders": 10,
    "max_prepared_transactions": 10,
    "datestyle": "ISO, MDY",
    "intervalstyle": "postgres",
    "extra_float_digits": 1,
}


def main(argv: list[str] | None = None) -> int:
    tests = sys.argv[1:] if argv is None else list(argv)
    try:
        bindir = pg_config("bindir")
        pg_regress = Path(pg_config("pgxs")).parent / ".." / "test" / "regress" / "pg_regress"
    except (RuntimeError, subprocess.CalledProcessError) as e:
        print(e, file=sys.stderr)
        return 2
    if not os.access(pg_regress, os.X_OK):
        print(f"pg_regress not found at {pg_regress}", file=sys.stderr)
        return 2
    tests = tests or sorted(p.stem for p in (REGRESS_DIR / "sql").glob("*.sql"))
    keep = True if os.environ.get("KEEP_CLUSTER", "0") == "1" else None
    pg = PgCluster("regress", shared_preload_libraries="", settings=SETTINGS, bindir=bindir,
                   extra_conf=os.environ.get("WALSHIP_EXTRA_CONF", ""), keep=keep, start=False)
    try:
        try:
            pg.start()
        except RuntimeError as e:
            print(e, file=sys.stderr)
            return 2
        pg.psql(f"CREATE DATABASE {DBNAME} TEMPLATE template0 ENCODING 'UTF8' "
                "LC_COLLATE 'C' LC_CTYPE 'C'")
        status = subprocess.run(
            [str(pg_regress), "--use-existing", f"--bindir={bindir}", f"--host={pg.socket_dir}",
             f"--port={pg.port}", f"--user={pg.user}", f"--dbname={DBNAME}",
             f"--inputdir={REGRESS_DIR}", f"--outputdir={REGRESS_DIR}", *tests],
            cwd=REGRESS_DIR).returncode
        if status != 0:
            diffs = REGRESS_DIR / "regression.diffs"
            if diffs.is_file():
                print("======== regression.diffs ========")
                print(diffs.read_text(errors="replace"), end="")
            print("======== server log (last 50 lines) ========")
            print(pg.log_tail(50), flush=True)
        return status
    except KeyboardInterrupt:
        return 130
    finally:
        try:
            pg.stop("fast")
        finally:
            pg.cleanup()
