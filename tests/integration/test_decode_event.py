"""walship.decode_event on bad input: a clear error for the caller, and nothing in the
server log (libprotobuf would write a line per call)."""

from __future__ import annotations

import psycopg
import pytest

PG_OPTIONS = {"shared_preload_libraries": ""}  # decode_event needs no preloading


@pytest.fixture(scope="module")
def db(pg):
    pg.execute("CREATE EXTENSION walship")
    return pg


def test_invalid_utf8_in_an_event_is_an_error_and_logs_nothing(db, event_class):
    event = event_class()
    event.op = 1
    event.source.table = "abcdef"
    bad = event.SerializeToString().replace(b"abcdef", b"ab\xff\xfe\xfdf")
    with db.connect() as conn:
        for _ in range(200):
            with pytest.raises(psycopg.errors.InvalidBinaryRepresentation) as info:
                conn.execute("SELECT walship.decode_event(%s)", [bad])
    assert "invalid walship event" in str(info.value)
    assert "libprotobuf" not in db.log_text()
    # a good event still decodes
    good = event.SerializeToString()
    assert db.scalar("SELECT walship.decode_event(%s)", [good])["source"]["table"] == "abcdef"
