-- walship 0.1.0

\echo Use "CREATE EXTENSION walship" to load this file. \quit

-- ===========================================================================
-- Output plugin support (plugin/, extension/decode_event.c)
-- ===========================================================================

-- One protobuf walship.v1.ChangeEvent (format=protobuf) rendered as JSON.
CREATE FUNCTION walship.decode_event(event bytea)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'walship_decode_event'
LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;

COMMENT ON FUNCTION walship.decode_event(bytea) IS
'renders one protobuf walship.v1.ChangeEvent (output plugin format=protobuf) as jsonb';

-- ===========================================================================
-- End of output plugin support
-- ===========================================================================
