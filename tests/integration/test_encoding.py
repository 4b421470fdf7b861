"""walship events carry UTF-8 text: a database in another encoding (SQL_ASCII holds any
bytes at all) is refused up front, never streamed as events nobody can decode."""

from __future__ import annotations

import psycopg
import pytest


@pytest.mark.parametrize("encoding", ["SQL_ASCII", "LATIN1"])
def test_a_database_not_in_utf8_is_refused_up_front(pg, encoding):
    dbname = f"enc_{encoding.lower()}"
    pg.execute(f"CREATE DATABASE {dbname} ENCODING '{encoding}' TEMPLATE template0 "
               f"LC_COLLATE 'C' LC_CTYPE 'C'")
    with pytest.raises(psycopg.errors.FeatureNotSupported) as info:
        pg.execute("SELECT pg_create_logical_replication_slot(%s, 'walship')",
                   [f"slot_{dbname}"], dbname=dbname)
    message = str(info.value)
    assert f"needs a database encoded as UTF8, not {encoding}" in message
    assert info.value.diag.message_hint == "Stream from a database created with ENCODING 'UTF8'."
    assert pg.scalar("SELECT count(*) FROM pg_replication_slots") == 0
