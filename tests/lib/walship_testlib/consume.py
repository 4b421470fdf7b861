"""Reading topics back: every partition from the beginning, no consumer group."""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Iterable


@dataclasses.dataclass
class KafkaMessage:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]
    timestamp_ms: int | None

    def header(self, name: str) -> bytes | None:
        """The last value of header ``name`` (None if absent)."""
        found = None
        for k, v in self.headers:
            if k == name:
                found = v
        return found

    @property
    def headers_dict(self) -> dict[str, bytes | None]:
        return dict(self.headers)


def consume_all(bootstrap: str, topics: str | Iterable[str], expected_count: int | None = None,
                timeout: float = 30.0, *, linger: float = 0.0,
                isolation_level: str = "read_committed", exact: bool = False,
                on_message=None, **conf) -> list[KafkaMessage]:
    """Read ``topics`` from the beginning (no consumer group, every partition assigned).

    Waits for topics that do not exist yet. With ``expected_count``, returns as soon as
    that many messages arrived (then keeps reading ``linger`` seconds to catch extras)
    and raises ``AssertionError`` if fewer came within ``timeout`` — or, with
    ``exact=True``, if more came. Without it, reads until every partition of every
    topic is at its end (and the topics exist), or ``timeout``.

    Messages come in arrival order: per partition in offset order. ``on_message`` is
    called with each message as it arrives (the demo prints them).
    """
    from confluent_kafka import Consumer, KafkaError, TopicPartition, OFFSET_BEGINNING

    if isinstance(topics, str):
        topics = [topics]
    topics = list(topics)
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"walship-test-{os.getpid()}-{time.monotonic_ns()}",  # required, unused
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "isolation.level": isolation_level,
        "auto.offset.reset": "earliest",
        "topic.metadata.refresh.interval.ms": 1000,
        **conf,
    })
    out: list[KafkaMessage] = []
    assigned: set[tuple[str, int]] = set()
    at_eof: set[tuple[str, int]] = set()
    deadline = time.monotonic() + timeout
    next_metadata = 0.0
    linger_until: float | None = None
    try:
        while True:
            now = time.monotonic()
            missing_topics = [t for t in topics if not any(a[0] == t for a in assigned)]
            if now >= next_metadata and (missing_topics or expected_count is not None):
                md = consumer.list_topics(timeout=5)
                new = []
                for t in topics:
                    tm = md.topics.get(t)
                    if tm is None or tm.error is not None:
                        continue
                    for p in tm.partitions:
                        if (t, p) not in assigned:
                            assigned.add((t, p))
                            new.append(TopicPartition(t, p, OFFSET_BEGINNING))
                if new:
                    consumer.incremental_assign(new)
                next_metadata = now + 1.0
            if expected_count is not None:
                if len(out) >= expected_count:
                    if linger_until is None:
                        linger_until = now + linger
                    if now >= linger_until:
                        break
                elif now >= deadline:
                    break
            else:
                if not missing_topics and assigned and at_eof >= assigned:
                    break
                if now >= deadline:
                    break
            if not assigned:
                time.sleep(0.1)
                continue
            msg = consumer.poll(0.1)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    at_eof.add((msg.topic(), msg.partition()))
                    continue
                if err.code() in (KafkaError.UNKNOWN_TOPIC_OR_PART,
                                  KafkaError._UNKNOWN_PARTITION, KafkaError._UNKNOWN_TOPIC):
                    continue
                raise RuntimeError(f"consume error: {err}")
            at_eof.discard((msg.topic(), msg.partition()))
            ts_type, ts = msg.timestamp()
            out.append(KafkaMessage(
                topic=msg.topic(), partition=msg.partition(), offset=msg.offset(),
                key=msg.key(), value=msg.value(),
                headers=[(k, v) for k, v in (msg.headers() or [])],
                timestamp_ms=ts if ts_type else None))
            if on_message is not None:
                on_message(out[-1])
    finally:
        consumer.close()
    if expected_count is not None:
        if len(out) < expected_count:
            raise AssertionError(
                f"consume_all: got {len(out)} of {expected_count} messages from {topics} "
                f"within {timeout:.0f}s (partitions seen: {sorted(assigned)})")
        if exact and len(out) > expected_count:
            raise AssertionError(
                f"consume_all: expected exactly {expected_count} messages from {topics}, "
                f"got {len(out)}")
    return out
