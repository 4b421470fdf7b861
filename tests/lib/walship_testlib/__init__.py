"""walship's test harness: what the regression runner, the integration tests, the
benchmarks and the demo start and talk to. Everything works the same from pytest and
from a plain script:

    import sys; sys.path.insert(0, "tests/lib")
    import walship_testlib as wt

    with wt.KafkaBroker() as kafka, wt.PgCluster() as pg:
        pg.execute("CREATE EXTENSION walship")
        ...
        msgs = wt.consume_all(kafka.bootstrap, ["demo.public.t"], expected_count=3)
        ChangeEvent = wt.load_event_class()
        print(ChangeEvent.FromString(msgs[0].value))

Modules:

- ``cluster``: ``PgCluster``, a throwaway ``initdb`` in a temp dir under /tmp on a free
  port, with logical decoding settings, ``shared_preload_libraries='walship'`` and the
  output plugin allow-list when the server knows it (``server_has_setting``). Runs as
  the ``postgres`` OS user when this process is root.
- ``regress``: the pg_regress runner on such a cluster (tests/run_regress.sh).
- ``kafkactl``: the Kafka broker processes (jars from Maven Central, KRaft config, start,
  stop, kill, N-node clusters); the command behind tests/kafka/kafka.sh.
- ``kafka``: ``KafkaBroker``, a real Apache Kafka broker (KRaft, one node), or, with
  ``WALSHIP_KAFKA_BOOTSTRAP`` set, a broker that already runs; ``KafkaCluster``, a real
  3-node (``n``) KRaft cluster for fault tests: ``kill(k)``/``stop(k)``/``start(k)``/
  ``pause(k)`` a node, ``leader_of(topic, p)``, ``wait_isr(topic, n)``.
- ``consume``: ``consume_all``, read topics from the beginning without a consumer group.
- ``events``: ``load_event_class``, the ``walship.v1.ChangeEvent`` class built at run time
  from a descriptor set; ``decode_event``, ``event_to_dict``, ``format_lsn``.
- ``partitioning``: ``java_murmur2`` / ``java_partition``, where a Java producer (and
  librdkafka's ``murmur2_random``) puts a key.
- ``streams``: ``stream_status``, ``wait_caught_up``.
- ``pytest_hooks``: the hooks every test suite's conftest imports (timeouts, log tails,
  no skips, figures).
- ``connect``: ``KafkaConnect``, a Kafka Connect standalone worker with the real Debezium
  PostgreSQL connector on its plugin path (jars from Maven Central, cached:
  ``ConnectJars``); ``debezium_postgres_config``, a connector config for a ``PgCluster``.
  Used by tests/compat and bench/debezium.
- ``common``: ``free_port``, ``wait_for``, ``started`` (start a resource, always clean it
  up), and the cleanup of what this process started.

Environment knobs: ``PG_CONFIG`` (which pg_config), ``WALSHIP_PG_BINDIR``,
``WALSHIP_KEEP_TMP=1`` (keep temp dirs), ``WALSHIP_KAFKA_BOOTSTRAP`` (use a running
broker), ``WALSHIP_KAFKA_SH`` (another kafka.sh), ``WALSHIP_DESC`` (descriptor set),
``WALSHIP_CONNECT_HEAP`` / ``WALSHIP_CONNECT_JVM_OPTS`` (the Connect worker's JVM).
"""

from __future__ import annotations

from .cluster import DEFAULT_OUTPUT_PLUGINS, PgCluster, pg_config, server_has_setting
from .common import REPO_ROOT, free_port, free_ports, started, wait_for
from .connect import ConnectJars, KafkaConnect, debezium_postgres_config
from .consume import KafkaMessage, consume_all
from .events import (EVENT_MESSAGE, PROTO_FILE, PROTO_ROOT, array_to_python, decode_event,
                     event_to_dict, find_descriptor_set, format_lsn, load_event_class,
                     value_to_python)
from .kafka import KafkaBroker, KafkaCluster
from .partitioning import java_murmur2, java_partition
from .streams import stream_status, wait_caught_up

__all__ = [
    "PgCluster",
    "KafkaBroker",
    "KafkaCluster",
    "KafkaMessage",
    "KafkaConnect",
    "ConnectJars",
    "debezium_postgres_config",
    "consume_all",
    "load_event_class",
    "value_to_python",
    "array_to_python",
    "find_descriptor_set",
    "decode_event",
    "event_to_dict",
    "format_lsn",
    "stream_status",
    "wait_caught_up",
    "java_murmur2",
    "java_partition",
    "free_port",
    "pg_config",
    "server_has_setting",
    "wait_for",
    "started",
]
