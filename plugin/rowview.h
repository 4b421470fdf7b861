/*
 * rowview.h: turning a heap tuple into the flat ws_row the C++ encoders read.
 *
 * A RowView is built once per published relation (it lives in a relation cache
 * entry) and then reused for every row of that relation: column names, type
 * names, key flags and output functions are looked up once, and the ws_column
 * arrays handed to the encoders are allocated once. Filling a row only deforms
 * the tuple and converts values; text forms and detoasted copies are allocated
 * in the caller's (per-change) memory context.
 */
#ifndef WALSHIP_ROWVIEW_H
#define WALSHIP_ROWVIEW_H

#include "postgres.h"

#include "access/htup.h"
#include "datatype/timestamp.h"
#include "fmgr.h"
#include "utils/relcache.h"

#include "walship_core.h"
#include "walship_plugin.h"

/* What the rest of the shim needs to know about one published column. */
typedef struct RowViewColumn {
    AttrNumber source_attno; /* 1-based, in the tuples the changes carry */
    Oid type_oid;            /* a domain's base type: values are the base type's */
    int16 typlen;
    ws_value_kind kind; /* from the one type table, in the core (ws_type_value_kind) */
    FmgrInfo output;    /* the type's output function, for every text form */
    /*
     * An array column handed over element by element (kind WS_VALUE_ARRAY): its
     * elements' type (a domain's base type), storage and kind; NULL otherwise.
     */
    struct RowViewColumn *element;
    bool elem_byval;
    char elem_align;
} RowViewColumn;

typedef struct RowView {
    /*
     * The columns as published: every non-dropped attribute of the published
     * relation (the partitioned root with partition-root=on, else the relation
     * itself), in its attribute order.
     */
    int ncolumns;
    RowViewColumn *columns;

    /* The tuples we read come from the source relation (the leaf partition). */
    int source_natts;
    Datum *values; /* deform buffers, source_natts long */
    bool *isnull;

    /*
     * The old tuple the server logs for UPDATE and DELETE: the replica identity
     * columns with REPLICA IDENTITY DEFAULT or USING INDEX (the other columns of
     * that tuple are NULL because they are not known, so they are left out),
     * every column with FULL, nothing with NOTHING.
     */
    int nbefore;
    int *before_index; /* nbefore indexes into columns[] */

    /* What the encoders see; column metadata filled once, values per row. */
    ws_column *after_columns;
    ws_column *before_columns;
    ws_row after;
    ws_row before;
} RowView;

/*
 * The index whose columns are a table's Kafka key: the replica identity's (the primary
 * key by default), the primary key with REPLICA IDENTITY FULL, none with NOTHING.
 */
extern Oid rowview_key_index(Relation relation);

/*
 * Describes the columns of `published` as read from tuples of `source` (the same
 * relation, or a leaf partition of the partitioned table `published`). With
 * array_elements, array columns are handed over element by element (WS_VALUE_ARRAY, what
 * ws_plugin_settings.array_elements asks for), else as their text. Allocates
 * in CurrentMemoryContext, which must live as long as the view. Needs catalog
 * access (a historic snapshot during decoding).
 */
extern void rowview_init(RowView *view, Relation source, Relation published, bool array_elements);

/*
 * The new row of an INSERT or UPDATE, and the old row of an UPDATE or DELETE as
 * the server logged it (NULL when the view publishes no old columns). The
 * result points into the view and stays valid until its next fill; values
 * point into the tuple or into memory allocated in CurrentMemoryContext.
 */
extern const ws_row *rowview_fill_new(RowView *view, TupleDesc source_desc, HeapTuple tuple);
extern const ws_row *rowview_fill_old(RowView *view, TupleDesc source_desc, HeapTuple tuple);
/*
 * After both rows of an UPDATE were filled: a TOAST-ed value the UPDATE did not touch is
 * not in the new tuple, but an old tuple of REPLICA IDENTITY FULL has it (the server
 * flattens TOAST-ed values into it): the new row gets that value.
 */
extern void rowview_resolve_unchanged_toast(RowView *view);

#endif /* WALSHIP_ROWVIEW_H */
