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
#include "core_report.h"
#include "walship_core.h"

WS_SQL_FUNCTION(walship_decode_event);

Datum walship_decode_event(PG_FUNCTION_ARGS)
{
    bytea *event = PG_GETARG_BYTEA_PP(0);
    ws_error err;
    char *json = NULL;
    char *text = NULL;

    /* the core's message starts with "invalid walship event:" and says what is wrong */
    if (ws_event_to_json((const uint8_t *)VARDATA_ANY(event), VARSIZE_ANY_EXHDR(event), &json,
                         &err) != WS_OK)
        ws_ereport(ERROR, &err, NULL);

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
