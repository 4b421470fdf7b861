"""The event schema: the ``walship.v1.ChangeEvent`` class built at run time from a
descriptor set (no generated ``_pb2`` module, so no protoc/runtime version coupling)."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from .cluster import pg_config
from .common import REPO_ROOT

PROTO_ROOT = REPO_ROOT / "plugin" / "proto"
PROTO_FILE = "walship/v1/change_event.proto"
EVENT_MESSAGE = "walship.v1.ChangeEvent"


def find_descriptor_set() -> Path | None:
    """Where the walship descriptor set is: ``$WALSHIP_DESC``, the installed one
    (``$(pg_config --sharedir)/walship/walship.desc``, what the server under test
    uses), else the newest ``build*/walship.desc`` of this checkout."""
    env = os.environ.get("WALSHIP_DESC")
    if env:
        return Path(env)
    try:
        installed = Path(pg_config("sharedir")) / "walship" / "walship.desc"
        if installed.is_file():
            return installed
    except RuntimeError:
        pass
    built = sorted((p for p in REPO_ROOT.glob("build*/walship.desc") if p.is_file()),
                   key=lambda p: p.stat().st_mtime, reverse=True)
    return built[0] if built else None


def _compile_descriptor_set() -> Path:
    protoc = shutil.which("protoc")
    if not protoc:
        raise FileNotFoundError(
            "no walship.desc (set WALSHIP_DESC, install walship, or build it) and no protoc "
            f"to compile {PROTO_ROOT / PROTO_FILE}")
    out = Path(tempfile.mkdtemp(prefix="walship-desc-")) / "walship.desc"
    subprocess.run([protoc, f"--proto_path={PROTO_ROOT}", "--include_imports",
                    f"--descriptor_set_out={out}", PROTO_FILE], check=True)
    return out


@functools.lru_cache(maxsize=None)
def _load_class(path: str, mtime: float, message: str):
    from google.protobuf import descriptor_pb2, descriptor_pool

    fds = descriptor_pb2.FileDescriptorSet()
    with open(path, "rb") as f:
        fds.ParseFromString(f.read())
    pool = descriptor_pool.DescriptorPool()
    for fd in fds.file:
        pool.Add(fd)
    desc = pool.FindMessageTypeByName(message)
    try:
        from google.protobuf.message_factory import GetMessageClass
    except ImportError:  # protobuf < 4.22
        from google.protobuf import message_factory

        return message_factory.MessageFactory(pool).GetPrototype(desc)
    return GetMessageClass(desc)


def load_event_class(descriptor_set_path: str | Path | None = None,
                     message: str = EVENT_MESSAGE):
    """The ``walship.v1.ChangeEvent`` message class, built at run time from a descriptor
    set (``find_descriptor_set()`` if no path is given; if none exists, compiled from
    plugin/proto with protoc)."""
    path = Path(descriptor_set_path) if descriptor_set_path else find_descriptor_set()
    if path is None:
        path = _compile_descriptor_set()
    if not path.is_file():
        raise FileNotFoundError(f"descriptor set {path} does not exist")
    return _load_class(str(path.resolve()), path.stat().st_mtime, message)


def format_lsn(lsn: int) -> str:
    """An LSN as PostgreSQL prints it: 0/16B3748."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def decode_event(data: bytes, event_class=None):
    """Parse one protobuf event (a Kafka message value)."""
    cls = event_class or load_event_class()
    return cls.FromString(data)


def event_to_dict(event) -> dict:
    """A ChangeEvent as a plain dict (proto field names, enums as names, 64-bit ints as
    ints, unset fields omitted)."""
    from google.protobuf import json_format

    d = json_format.MessageToDict(event, preserving_proto_field_name=True)
    return _ints(d, event.DESCRIPTOR)


def _ints(d: Any, desc) -> Any:
    # MessageToDict renders 64-bit integers as strings (JSON); turn them back into ints.
    from google.protobuf.descriptor import FieldDescriptor as F

    int64 = {F.TYPE_INT64, F.TYPE_UINT64, F.TYPE_SINT64, F.TYPE_FIXED64, F.TYPE_SFIXED64}
    if not isinstance(d, dict):
        return d
    for f in desc.fields:
        if f.name not in d:
            continue
        v = d[f.name]
        if f.type == F.TYPE_MESSAGE:
            d[f.name] = [_ints(x, f.message_type) for x in v] if isinstance(v, list) \
                else _ints(v, f.message_type)
        elif f.type in int64:
            d[f.name] = [int(x) for x in v] if isinstance(v, list) else int(v)
    return d


def array_to_python(array, element=None) -> list:
    """An ``ArrayValue`` as nested Python lists (``dims`` nest the row-major elements;
    lower bounds are not kept); ``element`` turns each element ``Value`` into Python
    (default: ``value_to_python``)."""
    convert = element or value_to_python
    flat = [convert(e) for e in array.elements]
    dims = list(array.dims)
    if not dims:
        return []

    def nest(start: int, depth: int) -> list:
        if depth == len(dims) - 1:
            return flat[start:start + dims[depth]]
        step = 1
        for d in dims[depth + 1:]:
            step *= d
        return [nest(start + i * step, depth + 1) for i in range(dims[depth])]

    return nest(0, 0)


def value_to_python(value):
    """A ``Value`` as Python: None for NULL, the member's value otherwise (an
    ``ArrayValue`` as nested lists, see ``array_to_python``); an unchanged TOAST value
    is the string ``"<unchanged toast>"``."""
    kind = value.WhichOneof("kind")
    if kind == "is_null":
        return None
    if kind == "unchanged_toast":
        return "<unchanged toast>"
    if kind == "array":
        return array_to_python(value.array)
    return getattr(value, kind)
