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
]

RULES_BY_ID = {r.id: r for r in RULES}

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
]


def describe() -> str:
    return "; ".join(r.id for r in RULES)
