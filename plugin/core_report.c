/*
 * core_report.c: ws_error to ereport (see core_report.h).
 */
#include "postgres.h"

#include "utils/elog.h"

#include "core_report.h"

int ws_error_sqlstate(ws_error_kind kind)
{
    switch (kind) {
    case WS_ERR_INVALID_OPTION:
        return ERRCODE_INVALID_PARAMETER_VALUE;
    case WS_ERR_CONFLICTING_OPTION:
        return ERRCODE_SYNTAX_ERROR; /* PostgreSQL's own "conflicting or redundant options" */
    case WS_ERR_INVALID_DATA:
        return ERRCODE_INVALID_BINARY_REPRESENTATION;
    case WS_ERR_LIMIT:
        return ERRCODE_PROGRAM_LIMIT_EXCEEDED;
    case WS_ERR_OUT_OF_MEMORY:
        return ERRCODE_OUT_OF_MEMORY;
    case WS_ERR_KAFKA:
        return ERRCODE_SYSTEM_ERROR; /* class 58: errors external to PostgreSQL */
    case WS_ERR_NONE:
    case WS_ERR_INTERNAL:
        break;
    }
    return ERRCODE_INTERNAL_ERROR;
}

void ws_ereport(int elevel, const ws_error *err, const char *context)
{
    ereport(elevel, (errcode(ws_error_sqlstate(err->kind)),
                     errmsg_internal("%s", err->message[0] != '\0' ? err->message
                                                                   : "unknown error in walship"),
                     err->detail[0] != '\0' ? errdetail_internal("%s", err->detail) : 0,
                     err->hint[0] != '\0' ? errhint("%s", err->hint) : 0,
                     context != NULL ? errcontext("%s", context) : 0));
}
