"""The harness's commands: ``python3 -m walship_testlib kafka ...`` (tests/kafka/kafka.sh),
``python3 -m walship_testlib regress [test ...]`` (tests/run_regress.sh) and
``python3 -m walship_testlib connect fetch|classpath|plugin-path`` (Kafka Connect and
Debezium jars, scripts/install-deps.sh)."""

import sys

if __name__ == "__main__":
    what, args = (sys.argv[1], sys.argv[2:]) if len(sys.argv) > 1 else ("", [])
    if what == "kafka":
        from .kafkactl import main
    elif what == "regress":
        from .regress import main
    elif what == "connect":
        from .connect import main
    else:
        sys.exit(__doc__)
    sys.exit(main(args))
