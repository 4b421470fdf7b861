"""The walship demo: a shop's changes, from PostgreSQL to Kafka, printed as they arrive.

Starts a throwaway PostgreSQL cluster (walship preloaded) and a local Kafka broker,
creates customers/products/orders, creates a stream over them, runs a short workload,
and prints every change event it consumes from Kafka as readable JSON. Everything it
started is stopped at the end, also on Ctrl-C or failure.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "lib"))
import walship_testlib as wt  # noqa: E402

SCHEMA = """
CREATE EXTENSION walship;
CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL, email text UNIQUE);
CREATE TABLE products  (sku text PRIMARY KEY, title text NOT NULL, price numeric(10,2) NOT NULL,
                        stock int NOT NULL DEFAULT 0);
CREATE TABLE orders    (id bigserial PRIMARY KEY, customer_id int REFERENCES customers,
                        sku text REFERENCES products, quantity int NOT NULL,
                        status text NOT NULL DEFAULT 'new', placed_at timestamptz DEFAULT now());
"""

WORKLOAD = [
    "INSERT INTO customers (name, email) VALUES ('Ada', 'ada@example.com'), ('Linus', 'linus@example.com')",
    "INSERT INTO products VALUES ('kbd-1', 'Keyboard', 49.90, 10), ('mse-2', 'Mouse', 19.50, 25)",
    """BEGIN;
       INSERT INTO orders (customer_id, sku, quantity) VALUES (1, 'kbd-1', 1);
       UPDATE products SET stock = stock - 1 WHERE sku = 'kbd-1';
       COMMIT""",
    "UPDATE orders SET status = 'shipped' WHERE id = 1",
    "INSERT INTO orders (customer_id, sku, quantity) VALUES (2, 'mse-2', 3)",
    "DELETE FROM orders WHERE id = 2",
    "UPDATE customers SET email = 'ada@lovelace.example' WHERE id = 1",
]
EXPECTED_EVENTS = 10
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
TOPICS = ["shop.public.customers", "shop.public.products", "shop.public.orders"]


def readable(msg, event_class) -> str:
    ev = event_class.FromString(msg.value)
    d = wt.event_to_dict(ev)
    src = d.get("source", {})
    out = {"topic": f"{msg.topic}[{msg.partition}]@{msg.offset}", "op": d.get("op"),
           "table": f"{src.get('schema')}.{src.get('table')}", "xid": src.get("xid"),
           "commit_lsn": wt.format_lsn(src.get("commit_lsn", 0))}

    def value(v: dict):
        if "is_null" in v or not v:
            return None
        kind, x = next(iter(v.items()))
        if kind in ("timestamp_us", "timestamptz_us"):  # microseconds since the epoch (UTC)
            return (EPOCH + dt.timedelta(microseconds=x)).isoformat()
        if kind == "array":  # ArrayValue: its elements (one-dimensional in the demo)
            return [value(e) for e in x.get("elements", [])]
        if kind == "unchanged_toast":
            return "<unchanged TOAST value>"
        return x

    def row(r):
        cols = {c["name"]: value(c.get("value", {})) for c in (r or {}).get("columns", [])}
        return cols or None

    if d.get("key"):
        out["key"] = row({"columns": d["key"]})
    if d.get("before"):
        out["before"] = row(d["before"])
    if d.get("after"):
        out["after"] = row(d["after"])
    return json.dumps(out, default=str)


def main() -> int:
    event_class = wt.load_event_class()
    print("walship demo: starting Kafka and PostgreSQL ...", flush=True)
    with wt.KafkaBroker() as kafka, wt.PgCluster("demo") as pg:
        print(f"  Kafka      {kafka.bootstrap}\n  PostgreSQL port {pg.port} ({pg.data_dir})", flush=True)
        pg.execute(SCHEMA)
        pg.execute("SELECT walship.create_stream('shop', %s, "
                   "ARRAY['public.customers','public.products','public.orders'], "
                   "'{\"topic_prefix\": \"shop\"}')", (kafka.bootstrap,))
        print("  stream 'shop' created; running the workload ...\n", flush=True)

        seen: list = []
        done = threading.Event()

        def consume():
            msgs = wt.consume_all(kafka.bootstrap, TOPICS, expected_count=EXPECTED_EVENTS,
                                  timeout=120, on_message=lambda m: print(readable(m, event_class), flush=True))
            seen.extend(msgs)
            done.set()

        consumer = threading.Thread(target=consume, daemon=True)
        consumer.start()
        for stmt in WORKLOAD:
            pg.execute(stmt)
            time.sleep(0.3)
        done.wait(150)
        print()
        status = pg.connect().execute(
            "SELECT name, state, events_produced, events_acked, lag_bytes, confirmed_flush_lsn "
            "FROM walship.stream_status").fetchall()
        for row in status:
            print("stream_status:", row, flush=True)
        pg.execute("SELECT walship.drop_stream('shop')")
        if len(seen) < EXPECTED_EVENTS:
            print(f"walship demo: expected {EXPECTED_EVENTS} events, got {len(seen)}", file=sys.stderr)
            return 1
        print(f"walship demo: {len(seen)} events streamed; stopping everything.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
