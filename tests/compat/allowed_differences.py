"""The allow-list: every difference between Debezium's records and walship's that the
compatibility suite does NOT report, each with its reason. Nothing else is normalized;
any other difference fails the suite.

Each rule is applied to both engines' records before they are compared (compare.py
``normalize``). A rule names what it touches; keep the list short, and every entry a
thing that must differ (or that cannot be made equal by walship), never a thing that
merely does today.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Rule:
    id: str
    what: str
    reason: str


RULES = [
    Rule("topic-prefix",
         "walship's topic prefix (wsh_<pair>) is read as Debezium's (dbz_<pair>): in the topic "
         "name, in every schema \"name\" that starts with '<prefix>.', in payload.source.name, "
         "and in the value of header __debezium.context.connectorLogicalName",
         "the two engines of a pair write to one broker and so cannot share a topic prefix; "
         "the prefix is Debezium's logical server name, which is also in schema names and "
         "source.name (scenarios.py)"),
    Rule("envelope-processing-time",
         "payload.ts_ms, payload.ts_us, payload.ts_ns of change and message events (the "
         "envelope's, not source.ts_* and not the transaction events' ts_ms); compared: "
         "present on both sides and integers",
         "the time each engine processed the event; the two engines run at different moments"),
    Rule("source-version",
         "payload.source.version; compared: present on both sides and a string",
         "the version of the engine that wrote the event (3.4.3.Final vs walship's)"),
    Rule("debezium-run-id",
         "the value of header __debezium.context.runId (its presence is compared)",
         "a random UUID Debezium draws each time its task starts"),
    Rule("debezium-message-collection-hash",
         "in an END transaction event's data_collections, the identity hash of the name "
         "Debezium gives logical messages: io.debezium.connector.postgresql."
         "LogicalDecodingMessageMonitor$LogicalDecodingMessageId@<hash> (the class name is "
         "compared)",
         "Debezium writes a Java object's default toString(), whose hash differs every run"),
    Rule("transaction-data-collections-order",
         "the order of the entries of an END transaction event's data_collections (compared "
         "sorted by data_collection; their names and counts are compared)",
         "Debezium lists them in a Java HashMap's iteration order, which for a transaction "
         "with a logical message depends on an identity hash: it differs between two runs "
         "of Debezium itself (the control pair saw it)"),
    Rule("smt-byte-array-identity",
         "in test_unwrap_smt.py's FileStreamSink lines only: a byte[] field (bytea, a logical "
         "message's content) is printed by Struct.toString() as [B@<identity hash>",
         "Java prints a byte array as its identity hash code, different for every record "
         "(Debezium's among themselves too); the bytes themselves are compared, as base64, by "
         "test_compat.py"),
    Rule("walship-headers",
         "headers walship.lsn and walship.xid on walship's records",
         "walship's own documented headers (docs/streams.md, Topics, keys, headers), added to "
         "Debezium's; consumers of Debezium's records do not read them"),
    # ---- intended: where Debezium's output is a bug, walship keeps the data --------------
    Rule("composite-kept",
         "a column of a composite type (types.c_composite): walship has it, as its text; "
         "Debezium leaves the column out of schema and payload",
         "Debezium drops columns of types it has no converter for (include.unknown.datatypes "
         "is off by default); walship never drops a column (docs/plugin.md)"),
    Rule("date-infinity",
         "a date column's 'infinity' / '-infinity' (types.c_date): walship 2147483647 / "
         "-2147483648, Debezium -2147472692 / -2147472691",
         "Debezium's conversion overflows: +infinity becomes a day in 5,877,611 BC, after "
         "-infinity; walship writes the int32 extremes, which order and round-trip"),
    Rule("double-min-subnormal",
         "the double 4.9E-324 (Java's Double.toString) written 5.0E-324 (types.c_double)",
         "walship prints the shortest digits that read back as the same double; Java prints "
         "one more for a handful of values; both parse to the same number"),
    Rule("name-kept",
         "a column of type name (types.c_name): Debezium null, walship the value",
         "Debezium has no converter for name and writes null: the value is lost"),
    Rule("multidimensional-array-kept",
         "a two-dimensional int[] (types.c_int_2d): Debezium [null,null], walship its text",
         "Debezium cannot read arrays of more than one dimension and writes a null per "
         "element; walship sends the array's text (which a consumer of the schema's "
         "one-dimensional array type must read as text, docs/plugin.md)"),
    Rule("numeric-array-special-kept",
         "a numeric[] holding NaN or an infinity (numeric_special.c_num_arr) in the string "
         "and double modes: Debezium null, walship the array",
         "Debezium drops the whole array when one element is special; walship writes it "
         "as it writes a numeric column's special values"),
]

RULES_BY_ID = {r.id: r for r in RULES}

# intended differences, per (table, column): what each engine writes is replaced by the
# rule's placeholder (composite-kept: walship's column is removed, schema and payload)
KEPT_COLUMNS = {
    ("types", "c_name"): "name-kept",
    ("types", "c_int_2d"): "multidimensional-array-kept",
    ("numeric_special", "c_num_arr"): "numeric-array-special-kept",
}
DROPPED_COLUMNS = {("types", "c_composite"): "composite-kept"}
# +infinity, -infinity: Debezium's values and walship's (either engine may write either:
# the control pair is Debezium twice)
DATE_INFINITIES = {("types", "c_date"): {"-2147472692": "+", "2147483647": "+",
                                         "-2147472691": "-", "-2147483648": "-"}}
MIN_SUBNORMAL = 5e-324

# Paths (compare.py's notation) of values replaced by a placeholder on both sides.
ENVELOPE_TIME_FIELDS = ("ts_ms", "ts_us", "ts_ns")
WALSHIP_ONLY_HEADERS = ("walship.lsn", "walship.xid")
MASKED_HEADERS = ("__debezium.context.runId",)
MESSAGE_COLLECTION = r"(io\.debezium\.connector\.postgresql\.LogicalDecodingMessageMonitor\$LogicalDecodingMessageId)@[0-9a-f]+"
LOGICAL_NAME_HEADER = "__debezium.context.connectorLogicalName"


# test_unwrap_smt.py: the same rules, on the FileStreamSink lines (Struct.toString()),
# as (rule id, regular expression, replacement).
SMT_LINE_RULES = [
    ("smt-byte-array-identity", r"\[B@[0-9a-f]+", "[B@<identity>"),
    # a logical message is not a row change: ExtractNewRecordState leaves its envelope
    ("envelope-processing-time", r"(value=Struct\{op=m,ts_ms=)-?[0-9]+", r"\1<processing time>"),
    ("source-version", r"(source=Struct\{version=)[^,}]*", r"\1<version>"),
    ("debezium-message-collection-hash", MESSAGE_COLLECTION, r"\1@<hash>"),
    # the intended differences (fields Struct.toString() leaves out are null there)
    ("composite-kept", r",c_composite=\([^)]*\)", ""),
    ("date-infinity", r"c_date=(-2147472692|2147483647)\b", "c_date=<infinity>"),
    ("date-infinity", r"c_date=(-2147472691|-2147483648)\b", "c_date=<-infinity>"),
    ("double-min-subnormal", r"=(4\.9|5\.0)E-324\b", "=<min subnormal>"),
    ("name-kept", r",c_name=[^,}]*", ""),
    ("multidimensional-array-kept", r",c_int_2d=\[[^\]]*\]", ""),
    ("numeric-array-special-kept", r",c_num_arr=\[[^\]]*\](?=.*numeric_special\})", ""),
]


def describe() -> str:
    return "; ".join(r.id for r in RULES)
