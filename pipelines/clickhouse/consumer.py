"""The second way into ClickHouse: a consumer outside it (the Python-consumer style).

A confluent-kafka consumer reads the stream's topics, hands each batch of messages to
ClickHouse as a table (chDB's ``Python()`` table function over a pyarrow table, bytes
intact) and inserts it into the changes tables with the same SELECT the Kafka engine's
materialized view runs (walship_clickhouse.change_select), then commits the batch's
offsets. So ClickHouse decodes the events either way, the current-state view is the
same, and the consumer owns delivery: offsets are committed only after the insert
(at-least-once; the changes table folds exact duplicates), a failed insert stops the
consumer with its error instead of skipping the batch.

Why a consumer instead of the Kafka engine: a ClickHouse without the Kafka engine (or
whose operators do not want it to reach the brokers), control over batching, commits
and errors, and one process that can also transform or route events on the way.

For protobuf the consumer flattens each ChangeEvent as ProtobufSingle does (every
field by its path; a row's columns as parallel arrays, one per ``Value`` member, each
with the member's default where it is not set): message_columns() names the paths, so
the consumer needs no knowledge of PostgreSQL's types.
"""

from __future__ import annotations

import threading

import walship_clickhouse as wch


def _default(field):
    from google.protobuf.descriptor import FieldDescriptor as F

    if field.type == F.TYPE_MESSAGE:
        return None
    if field.type in (F.TYPE_STRING,):
        return ""
    if field.type == F.TYPE_BYTES:
        return b""
    if field.type == F.TYPE_BOOL:
        return 0
    if field.type == F.TYPE_ENUM:
        return field.enum_type.values[0].name
    return 0


def _repeated(field) -> bool:
    r = getattr(field, "is_repeated", None)   # protobuf >= 6; label before
    return r if r is not None else field.label == field.LABEL_REPEATED


class Flattener:
    """Reads the fields at ``paths`` (dotted) of a protobuf message as ProtobufSingle does:
    a repeated field on the way makes a list of its elements' values, an unset oneof
    member its default. The walk is planned once per message type; each oneof is asked
    once per message."""

    def __init__(self, descriptor, paths: list[str]):
        trie: dict = {}
        for p in paths:
            node = trie
            parts = p.split(".")
            for x in parts[:-1]:
                node = node.setdefault(x, {})
            node[parts[-1]] = None
        self.plan = self._plan(descriptor, trie, "")

    @classmethod
    def _plan(cls, desc, trie: dict, prefix: str) -> list:
        steps = []
        for name, sub in trie.items():
            field = desc.fields_by_name.get(name)
            if field is None:
                raise KeyError(f"{desc.full_name} has no field {name!r}")
            full = prefix + name
            if sub is not None:
                if field.message_type is None:
                    raise KeyError(f"{field.full_name} is no message")
                inner = cls._plan(field.message_type, sub, "")
                leaves = cls._leaves(inner)
                steps.append(("list" if _repeated(field) else "msg", name, full, inner, leaves))
            else:
                conv = _converter(field)
                if _repeated(field):
                    steps.append(("values", name, full, conv, None))
                elif field.containing_oneof is not None:
                    steps.append(("member", name, full, conv, (field.containing_oneof.name, _default(field))))
                else:
                    steps.append(("value", name, full, conv, None))
        return steps

    @staticmethod
    def _leaves(plan: list) -> list[str]:
        out = []
        for kind, _, full, inner, leaves in plan:
            out += [full + "." + x for x in leaves] if kind in ("list", "msg") else [full]
        return out

    def __call__(self, msg) -> dict:
        out: dict = {}
        self._walk(msg, self.plan, "", out)
        return out

    def _walk(self, msg, plan: list, prefix: str, out: dict) -> None:
        kinds: dict = {}
        for kind, name, full, arg, extra in plan:
            if kind == "member":
                oneof, default = extra
                k = kinds.get(oneof, 0)
                if k == 0:
                    k = kinds[oneof] = msg.WhichOneof(oneof)
                out[prefix + full] = arg(getattr(msg, name)) if k == name else default
            elif kind == "value":
                out[prefix + full] = arg(getattr(msg, name))
            elif kind == "values":
                out[prefix + full] = [arg(x) for x in getattr(msg, name)]
            elif kind == "msg":
                self._walk(getattr(msg, name), arg, prefix + full + ".", out)
            else:   # a repeated message: each leaf a list over the elements
                parts = []
                for item in getattr(msg, name):
                    part: dict = {}
                    self._walk(item, arg, "", part)
                    parts.append(part)
                for leaf in extra:
                    out[prefix + full + "." + leaf] = [part[leaf] for part in parts]


def _converter(field):
    """The value of a scalar field as the batch holds it (enums by name, booleans as 0/1)."""
    if field.type == field.TYPE_ENUM:
        names = {v.number: v.name for v in field.enum_type.values}
        return lambda v: names.get(v, str(v))
    if field.type == field.TYPE_BOOL:
        return int
    return lambda v: v


def _arrow_type(name: str, ch_type: str):
    """The pyarrow type of a message column (bytes members stay bytes)."""
    import pyarrow as pa

    if ch_type.startswith("Array("):
        return pa.list_(_arrow_type(name, ch_type[len("Array("):-1]))
    if ch_type == "String":
        return pa.binary() if name.rsplit(".", 1)[-1] in wch.PB_BYTES_MEMBERS else pa.string()
    return {"UInt8": pa.uint8(), "Int32": pa.int32(), "Int64": pa.int64(), "UInt64": pa.uint64(),
            "Float64": pa.float64()}.get(ch_type, pa.string())   # Enum8: its name


class Consumer:
    """Reads ``tables`` ({topic: TableSpec}) of one ClickHouse database into their
    changes tables, in a thread, until stop()."""

    def __init__(self, ch: "wch.ClickHousePipeline", db: str, tables: dict, fmt: str, bootstrap: str,
                 group: str, batch: int = 5000, poll_s: float = 0.2):
        import pyarrow as pa
        from confluent_kafka import Consumer as KafkaConsumer

        self.ch, self.db, self.tables, self.fmt = ch, db, tables, fmt
        self.batch, self.poll_s = batch, poll_s
        self.columns = wch.message_columns(fmt)
        self.types = {n: _arrow_type(n, ty) for n, ty in self.columns}
        self.types |= {"_headers.name": pa.list_(pa.string()), "_headers.value": pa.list_(pa.string()),
                       "_partition": pa.uint64(), "_offset": pa.uint64()}
        self.inserts = {}
        # Python() reads every column as Nullable: typed as the Kafka engine's are
        typed = self.columns + [("_headers.name", "Array(String)"), ("_headers.value", "Array(String)"),
                                ("_partition", "UInt64"), ("_offset", "UInt64")]
        source = "(SELECT " + ", ".join(f"CAST({wch.q(n)} AS {ty}) AS {wch.q(n)}" for n, ty in typed) + \
            " FROM Python(batch))"
        for t, spec in tables.items():
            changes = f"{wch.q(db)}.{wch.q(spec.table + '__changes')}"
            cols = [line for line in ch.query(
                f"SELECT name FROM system.columns WHERE database = {wch.lit(db)} AND "
                f"table = {wch.lit(spec.table + '__changes')} AND default_kind = '' ORDER BY position").splitlines()]
            # the SELECT's columns are the changes table's, in its order (_ingested aside)
            self.inserts[t] = (f"INSERT INTO {changes} ({', '.join(wch.q(c) for c in cols)})\n"
                               f"{wch.change_select(spec, fmt, source)}")
        if fmt == "protobuf":
            from walship_testlib.events import load_event_class

            self.event_class = load_event_class()
            self.flatten = Flattener(self.event_class.DESCRIPTOR, [n for n, _ in self.columns])
        self.kafka = KafkaConsumer({"bootstrap.servers": bootstrap, "group.id": group,
                                    "enable.auto.commit": False, "auto.offset.reset": "earliest",
                                    "enable.partition.eof": False})
        self.kafka.subscribe(list(tables))
        self.messages = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"clickhouse-consumer-{db}", daemon=True)

    def start(self) -> "Consumer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self.kafka.close()
        if self.error is not None:
            raise RuntimeError(f"the ClickHouse consumer of {self.db} failed: {self.error}") from self.error

    def check(self) -> None:
        """Raises the consumer's error, if it stopped on one."""
        if self.error is not None:
            raise RuntimeError(f"the ClickHouse consumer of {self.db} failed: {self.error}") from self.error

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                msgs = self.kafka.consume(self.batch, timeout=self.poll_s)
                if not msgs:
                    continue
                by_topic: dict[str, list] = {}
                for m in msgs:
                    if m.error() is not None:
                        raise RuntimeError(f"Kafka: {m.error()}")
                    by_topic.setdefault(m.topic(), []).append(m)
                for topic, ms in by_topic.items():
                    self._insert(topic, ms)
                self.kafka.commit(asynchronous=False)   # only after every insert went in
                self.messages += len(msgs)
        except BaseException as e:  # noqa: BLE001  (kept, raised by stop())
            self.error = e

    def _insert(self, topic: str, msgs: list) -> None:
        import pyarrow as pa

        cols: dict[str, list] = {n: [] for n, _ in self.columns}
        cols |= {"_headers.name": [], "_headers.value": [], "_partition": [], "_offset": []}
        for m in msgs:
            value = m.value() or b""
            if self.fmt == "json":
                cols["message"].append(value.decode("utf-8"))
            else:
                flat = self.flatten(self.event_class.FromString(value))
                for name, _ in self.columns:
                    cols[name].append(flat[name])
            headers = m.headers() or []
            cols["_headers.name"].append([k for k, _ in headers])
            cols["_headers.value"].append([(v or b"").decode("utf-8", "replace") for _, v in headers])
            cols["_partition"].append(m.partition())
            cols["_offset"].append(m.offset())
        batch = pa.table({n: pa.array(v, type=self.types.get(n)) for n, v in cols.items()})  # noqa: F841
        self.ch.query(self.inserts[topic])   # reads batch: Python(batch)

