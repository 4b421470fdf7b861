/*
 * decode_event.c: walship.decode_event(bytea) -> jsonb.
 *
 * Renders one protobuf walship.v1.ChangeEvent as JSON, for people reading events
 * by hand and for the regression tests. The C++ core parses and renders; this
 * file only moves bytes in and the JSON text out, and reports bad input.
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"

#include "compat.h"
#include "walship_core.h"

WS_SQL_FUNCTION(walship_decode_event);

Datum walship_decode_event(PG_FUNCTION_ARGS)
{
    bytea *event = PG_GETARG_BYTEA_PP(0);
    char core_msg[WS_ERRMSG_SIZE];
    char *json = NULL;
    char *text = NULL;
    ws_status status;

    status = ws_event_to_json((const uint8_t *)VARDATA_ANY(event), VARSIZE_ANY_EXHDR(event), &json,
                              core_msg);
    if (status == WS_OUT_OF_MEMORY)
        ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory"),
                        errdetail("walship ran out of memory while decoding an event.")));
    /* the core's message starts with "invalid walship event:" and says what is wrong */
    if (status != WS_OK)
        ereport(ERROR, (errcode(ERRCODE_INVALID_BINARY_REPRESENTATION), errmsg("%s", core_msg),
                        errhint("walship.decode_event() takes one walship.v1.ChangeEvent as the "
                                "walship output plugin writes it with format=protobuf.")));

    /* the core's string is malloc'd: copy it into palloc'd memory before anything can fail */
    PG_TRY();
    {
        text = pstrdup(json);
    }
    PG_FINALLY();
    {
        ws_free(json);
    }
    PG_END_TRY();

    PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(text)));
}
