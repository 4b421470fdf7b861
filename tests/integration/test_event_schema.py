"""The public event schema (plugin/proto/walship/v1/change_event.proto) as consumers
rely on it: every field's number and type, frozen since the 0.x change (new fields get
new numbers; none is renumbered, retyped or reused), and a header comment that schema
parsers read (Karapace's failed on an empty ``//`` line)."""

from __future__ import annotations

import walship_testlib as wt
from walship_testlib.events import PROTO_FILE, PROTO_ROOT

# message -> {field: (number, type, repeated)}; types as descriptor type names
FROZEN = {
    "Source": {"database": (1, "string", False), "schema": (2, "string", False),
               "table": (3, "string", False), "xid": (4, "int64", False),
               "commit_lsn": (5, "int64", False), "change_lsn": (6, "int64", False),
               "commit_time_us": (7, "int64", False), "origin": (8, "string", False),
               "truncated_tables": (9, "string", True)},
    "Value": {"is_null": (1, "bool", False), "unchanged_toast": (2, "bool", False),
              "int64_value": (3, "int64", False), "double_value": (4, "double", False),
              "bool_value": (5, "bool", False), "string_value": (6, "string", False),
              "bytes_value": (7, "bytes", False), "timestamp_us": (8, "int64", False),
              "date_days": (9, "int32", False), "uuid": (10, "bytes", False),
              "numeric": (11, "string", False), "json": (12, "string", False),
              "timestamptz_us": (13, "int64", False), "array": (14, "ArrayValue", False)},
    "ArrayValue": {"elements": (1, "Value", True), "dims": (2, "int32", True),
                   "lower_bounds": (3, "int32", True)},
    "Column": {"name": (1, "string", False), "type_oid": (2, "int64", False),
               "type_name": (3, "string", False), "value": (4, "Value", False)},
    "Row": {"columns": (1, "Column", True)},
    "Message": {"prefix": (1, "string", False), "content": (2, "bytes", False),
                "transactional": (3, "bool", False)},
    "ChangeEvent": {"op": (1, "Operation", False), "source": (2, "Source", False),
                    "key": (3, "Column", True), "before": (4, "Row", False),
                    "after": (5, "Row", False), "message": (6, "Message", False),
                    "event_count": (7, "int64", False)},
}


def _type_name(field) -> str:
    from google.protobuf.descriptor import FieldDescriptor as F

    if field.type == F.TYPE_MESSAGE:
        return field.message_type.name
    if field.type == F.TYPE_ENUM:
        return field.enum_type.name
    names = {F.TYPE_STRING: "string", F.TYPE_BYTES: "bytes", F.TYPE_BOOL: "bool",
             F.TYPE_INT64: "int64", F.TYPE_INT32: "int32", F.TYPE_DOUBLE: "double",
             F.TYPE_UINT32: "uint32", F.TYPE_UINT64: "uint64"}
    return names.get(field.type, str(field.type))


def _repeated(field) -> bool:
    if hasattr(field, "is_repeated"):  # protobuf 6
        return field.is_repeated
    return field.label == field.LABEL_REPEATED


def test_field_numbers_and_types_are_frozen():
    file = wt.load_event_class().DESCRIPTOR.file  # the installed walship.desc
    assert sorted(file.message_types_by_name) == sorted(FROZEN)
    for message, want in FROZEN.items():
        desc = file.message_types_by_name[message]
        got = {f.name: (f.number, _type_name(f), _repeated(f))
               for f in desc.fields}
        assert got == want, message
    # Value's members are one oneof: exactly one is set
    value = file.message_types_by_name["Value"]
    assert [f.name for f in value.oneofs_by_name["kind"].fields] == list(FROZEN["Value"])


def test_no_unsigned_fields_for_consumers_without_them():
    file = wt.load_event_class().DESCRIPTOR.file
    for message in file.message_types_by_name.values():
        for f in message.fields:
            assert _type_name(f) not in ("uint32", "uint64"), f"{message.name}.{f.name}"


def test_the_header_comment_has_no_empty_comment_lines():
    lines = (PROTO_ROOT / PROTO_FILE).read_text().splitlines()
    empty = [i + 1 for i, line in enumerate(lines) if line.strip() == "//"]
    assert not empty, f"empty // lines at {empty}"
    assert lines[0].startswith("// walship.v1: the public change event schema.")
    assert any("Field numbers are stable from here on" in line for line in lines)
