"""What the compatibility suite runs: the tables, and the pairs of streams over them.

A *pair* is one walship stream and one Debezium connector with the same settings
(``decimal_handling`` ⇔ ``decimal.handling.mode``, ``include_transaction`` ⇔
``provide.transaction.metadata``), each with its own slot, streaming the same tables of
the same cluster at the same time to the same broker. Every pair sees the one run of
scripts/changes.sql. The two engines of a pair write under different topic prefixes,
``dbz_<pair>`` and ``wsh_<pair>`` (one broker, so the prefixes must differ); the
comparison maps walship's prefix to Debezium's (allowed_differences.py, rule
``topic-prefix``).

Debezium's settings are its defaults except:
- ``plugin.name=pgoutput``, ``snapshot.mode=no_data``, and walship's ``snapshot_mode``
  ``no_data`` alike (the suite compares changes; Debezium's blocking initial snapshot
  and walship's incremental one differ by design, see docs/snapshots.md),
  its own ``slot.name`` and ``publication.name`` with ``publication.autocreate.mode=
  filtered`` (a publication of the pair's tables only: several connectors share one
  database), ``table.include.list`` = the pair's tables;
- ``skipped.operations=none``: Debezium's default ``t`` drops TRUNCATE events, as
  walship's JSON does by default; both send them here (walship ``truncate=true``) so
  that the suite compares them;
- the pair's own ``decimal.handling.mode`` (Debezium's default is ``precise``,
  walship's ``string``) and, in pair ``txmeta``, ``provide.transaction.metadata``.

walship's options: ``format=json``, ``topic_prefix``, ``messages=true`` (Debezium emits
every logical message by default), ``truncate=true`` (see above), the pair's ``decimal_handling`` and, in ``txmeta``,
``include_transaction``; the rest at their defaults.

Pair ``control`` has Debezium on both sides (a second connector under walship's prefix):
it must compare equal, or the comparison itself is wrong.
"""

from __future__ import annotations

import dataclasses

# (schema, table) as they are named in the database; scripts/schema.sql creates them.
TABLES: list[tuple[str, str]] = [
    ("public", "types"),
    ("public", "types_notnull"),
    ("public", "numeric_special"),
    ("public", "defaults"),
    ("public", "toast_default"),
    ("public", "toast_full"),
    ("public", "pk_single"),
    ("public", "pk_composite"),
    ("public", "nokey_full"),
    ("public", "ri_index"),
    ("public", "trunc_a"),
    ("public", "trunc_b"),
    ("public", "part"),
    ("public", "part_eu"),
    ("public", "part_us"),
    ("public", "Bad Name!"),
    ("public", "Ünïcode"),
    ("My Schema", "dots.and-dashes"),
    ("public", "orders"),
    ("public", "order_lines"),
    ("public", "compat_end"),
]

# Partitioned tables: walship takes the parent (it stands for its partitions); Debezium
# matches names, and the changes come as the partitions'.
PARTITIONS = {("public", "part"): [("public", "part_eu"), ("public", "part_us")]}

END_TABLE = ("public", "compat_end")

# Debezium cannot write numeric NaN/Infinity as a Decimal (precise mode).
NOT_IN_PRECISE = {("public", "numeric_special")}


def quote_ident(name: str) -> str:
    if name.islower() and name.replace("_", "a").isalnum() and name.isascii() and not name[0].isdigit():
        return name
    return '"' + name.replace('"', '""') + '"'


def walship_table(schema: str, table: str) -> str:
    """The name create_stream takes: schema-qualified, quoted where SQL needs it."""
    return f"{quote_ident(schema)}.{quote_ident(table)}"


@dataclasses.dataclass(frozen=True)
class Pair:
    name: str
    decimal: str                    # walship decimal_handling = Debezium decimal.handling.mode
    transactions: bool = False      # include_transaction / provide.transaction.metadata
    control: bool = False           # the harness's control: Debezium on both sides

    @property
    def dbz_prefix(self) -> str:
        return f"dbz_{self.name}"

    @property
    def wsh_prefix(self) -> str:
        return f"wsh_{self.name}"

    @property
    def stream(self) -> str:
        return f"compat_{self.name}"

    @property
    def dbz_slot(self) -> str:
        return f"dbz_{self.name}"

    @property
    def connector(self) -> str:
        return f"dbz_{self.name}"

    @property
    def control_connector(self) -> str:
        """A control pair's second Debezium connector (and its slot), in walship's place."""
        return f"wsh_{self.name}"

    def tables(self) -> list[tuple[str, str]]:
        """The tables of this pair, as Debezium names them (partitions, not parents)."""
        return [t for t in TABLES if not (self.decimal == "precise" and t in NOT_IN_PRECISE)]

    def walship_tables(self) -> list[str]:
        partitions = {p for ps in PARTITIONS.values() for p in ps}
        return [walship_table(*t) for t in self.tables() if t not in partitions]

    def walship_options(self) -> dict:
        opts = {"format": "json", "topic_prefix": self.wsh_prefix, "messages": True,
                "truncate": True, "snapshot_mode": "no_data",
                "decimal_handling": self.decimal}
        if self.transactions:
            opts["include_transaction"] = True
        return opts

    def debezium_overrides(self) -> dict:
        o = {"decimal.handling.mode": self.decimal, "skipped.operations": "none"}
        if self.transactions:
            o["provide.transaction.metadata"] = "true"
        return o

    def describe(self) -> str:
        if self.control:
            return (f"control: Debezium against a second Debezium connector, "
                    f"decimal.handling.mode={self.decimal}, provide.transaction.metadata="
                    f"{str(self.transactions).lower()}")
        s = (f"walship decimal_handling={self.decimal} vs Debezium "
             f"decimal.handling.mode={self.decimal}")
        if self.transactions:
            s += ", include_transaction vs provide.transaction.metadata"
        return s


PAIRS = [
    Pair("string", "string"),
    Pair("precise", "precise"),
    Pair("double", "double"),
    Pair("txmeta", "string", transactions=True),
    # The harness's control: two Debezium connectors must compare equal, so that the
    # allow-list covers all that differs between two runs of the same engine.
    Pair("control", "string", transactions=True, control=True),
]
PAIRS_BY_NAME = {p.name: p for p in PAIRS}
