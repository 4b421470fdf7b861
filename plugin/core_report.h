/*
 * core_report.h: the C side of the one error contract (ws_error, walship_core.h).
 *
 * Every error the C++ core or the Kafka sink returns is reported here, so that its
 * kind decides the SQLSTATE in one place and the same error reads the same from
 * pg_recvlogical, the SQL decoding functions, create_stream and a stream worker.
 */
#ifndef WALSHIP_CORE_REPORT_H
#define WALSHIP_CORE_REPORT_H

#include "postgres.h"

#include "walship_core.h"

/* The SQLSTATE of an error kind (ERRCODE_*). */
extern int ws_error_sqlstate(ws_error_kind kind);

/*
 * Reports err at elevel: its message, detail and hint as errmsg, errdetail and errhint,
 * and context (NULL: none) as one more errcontext line. With ERROR it does not return.
 */
extern void ws_ereport(int elevel, const ws_error *err, const char *context);

#endif /* WALSHIP_CORE_REPORT_H */
