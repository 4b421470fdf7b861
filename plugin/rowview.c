/*
 * rowview.c: the one place that turns a heap tuple into a ws_row.
 *
 * It owns the replica identity rules (which columns are key columns, which columns an
 * old tuple really carries), what a table description tells about each column beyond
 * its type (defaults, enum labels, domains' base types) and the value conversions
 * (epochs, infinities, TOAST). Which type travels as which ws_value_kind is the core's
 * one type table (ws_type_value_kind).
 * Everything it hands out is borrowed: the encoders read it during the callback
 * and never keep it.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_class.h"
#include "catalog/pg_index.h"
#include "catalog/pg_enum.h"
#include "catalog/pg_type.h"
#include "common/int.h"
#include "datatype/timestamp.h"
#include "nodes/bitmapset.h"
#include "nodes/nodes.h"
#include "nodes/primnodes.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/cash.h"
#include "utils/pg_locale.h"
#include "utils/catcache.h"
#include "utils/date.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/ruleutils.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "compat.h"
#include "rowview.h"

/*
 * Key columns of an index (its INCLUDE columns are not part of the key). Replica
 * identity indexes and primary keys cannot have expression columns, so every
 * indkey entry is a real attribute number.
 */
static Bitmapset *index_key_attnums(Oid indexoid)
{
    Bitmapset *attnums = NULL;
    Relation index;

    if (!OidIsValid(indexoid))
        return NULL;

    index = RelationIdGetRelation(indexoid);
    if (!RelationIsValid(index))
        elog(ERROR, "could not open index with OID %u", indexoid);

    for (int i = 0; i < index->rd_index->indnkeyatts; i++) {
        AttrNumber attno = index->rd_index->indkey.values[i];

        if (attno > 0)
            attnums = bms_add_member(attnums, attno);
    }
    RelationClose(index);
    return attnums;
}

/*
 * Arrays name their element type; for a domain over an array, the domain's base
 * array decides, and an element that is itself a domain is named by its base type.
 */
static Oid element_type_of(Oid typid)
{
    Oid elem = get_element_type(getBaseType(typid));

    return OidIsValid(elem) ? getBaseType(elem) : InvalidOid;
}

/*
 * The DEFAULT of column attnum as SQL text (palloc'd), or NULL; generated columns have
 * none. *constant: the default when it is a constant (a literal), else NULL.
 */
static const char *column_default(TupleDesc desc, Form_pg_attribute attr, Const **constant)
{
    TupleConstr *constr = desc->constr;

    *constant = NULL;
    if (constr == NULL || !attr->atthasdef || attr->attgenerated != '\0')
        return NULL;
    for (int i = 0; i < constr->num_defval; i++) {
        if (constr->defval[i].adnum == attr->attnum) {
            Node *expr = stringToNode(constr->defval[i].adbin);

            /*
             * Only a literal the server already turned into a value: evaluating anything
             * else here (a cast, a function) could fail or run user code in the middle of
             * decoding. A number coerced to the column's type (numeric(10,2) DEFAULT 1.5)
             * is read back from the text by the core.
             */
            if (IsA(expr, Const))
                *constant = (Const *)expr;
            return deparse_expression(expr, NIL, false, false);
        }
    }
    return NULL;
}

static int enum_label_compare(const void *a, const void *b)
{
    const HeapTuple *x = a;
    const HeapTuple *y = b;
    float4 ox = ((Form_pg_enum)GETSTRUCT(*x))->enumsortorder;
    float4 oy = ((Form_pg_enum)GETSTRUCT(*y))->enumsortorder;

    return ox < oy ? -1 : ox > oy ? 1 : 0;
}

/* An enum's labels in their sort order (palloc'd); NULL and 0 for every other type. */
static const char *const *enum_labels(Oid typid, int *nlabels)
{
    CatCList *list;
    HeapTuple *members;
    const char **labels;

    *nlabels = 0;
    if (get_typtype(typid) != TYPTYPE_ENUM)
        return NULL;
    list = SearchSysCacheList1(ENUMTYPOIDNAME, ObjectIdGetDatum(typid));
    members = palloc(sizeof(HeapTuple) * Max(list->n_members, 1));
    for (int i = 0; i < list->n_members; i++)
        members[i] = &list->members[i]->tuple;
    qsort(members, list->n_members, sizeof(HeapTuple), enum_label_compare);
    labels = palloc(sizeof(char *) * Max(list->n_members, 1));
    for (int i = 0; i < list->n_members; i++)
        labels[i] = pstrdup(NameStr(((Form_pg_enum)GETSTRUCT(members[i]))->enumlabel));
    *nlabels = list->n_members;
    ReleaseSysCacheList(list);
    pfree(members);
    return labels;
}

static void fill_value(const RowViewColumn *col, Datum datum, bool isnull, ws_value *value);

Oid rowview_key_index(Relation relation)
{
    switch (relation->rd_rel->relreplident) {
    case REPLICA_IDENTITY_DEFAULT:
    case REPLICA_IDENTITY_INDEX:
        return RelationGetReplicaIndex(relation);
    case REPLICA_IDENTITY_FULL:
        /* the old tuple is the whole row; the primary key, if any, is the key */
        return ws_relation_primary_key_index(relation);
    default:
        /* REPLICA IDENTITY NOTHING: no old tuple, no key */
        return InvalidOid;
    }
}

/*
 * How the elements of an array column of element type elem (a base type) are handed
 * over: as a scalar column of that type would be.
 */
static RowViewColumn *element_column(Oid elem)
{
    RowViewColumn *element = palloc0(sizeof(RowViewColumn));
    Oid outfunc;
    bool isvarlena;

    element->type_oid = elem;
    element->typlen = get_typlen(elem);
    element->kind = ws_type_value_kind(elem);
    getTypeOutputInfo(elem, &outfunc, &isvarlena);
    fmgr_info(outfunc, &element->output);
    return element;
}

void rowview_init(RowView *view, Relation source, Relation published, bool array_elements)
{
    TupleDesc source_desc = RelationGetDescr(source);
    TupleDesc desc = RelationGetDescr(published);
    AttrMap *map = NULL;
    Bitmapset *identity = NULL; /* columns the old tuple carries, unless FULL */
    Bitmapset *key = NULL;      /* columns that form the key */
    char replident = source->rd_rel->relreplident;
    int ncolumns = 0;

    /*
     * What the server logs is decided by the relation the change happened in
     * (the leaf partition), so the identity comes from there; columns are
     * matched to the published relation by name, like pgoutput does with
     * publish_via_partition_root.
     */
    if (RelationGetRelid(source) != RelationGetRelid(published))
        map = ws_build_attrmap_by_name(source_desc, desc);

    if (replident == REPLICA_IDENTITY_DEFAULT || replident == REPLICA_IDENTITY_INDEX)
        identity = index_key_attnums(RelationGetReplicaIndex(source));
    key = index_key_attnums(rowview_key_index(source));

    for (int i = 0; i < desc->natts; i++) {
        if (!TupleDescAttr(desc, i)->attisdropped)
            ncolumns++;
    }

    memset(view, 0, sizeof(*view));
    view->ncolumns = ncolumns;
    view->columns = palloc0(sizeof(RowViewColumn) * Max(ncolumns, 1));
    view->after_columns = palloc0(sizeof(ws_column) * Max(ncolumns, 1));
    view->before_columns = palloc0(sizeof(ws_column) * Max(ncolumns, 1));
    view->before_index = palloc0(sizeof(int) * Max(ncolumns, 1));
    view->source_natts = source_desc->natts;
    view->values = palloc0(sizeof(Datum) * Max(source_desc->natts, 1));
    view->isnull = palloc0(sizeof(bool) * Max(source_desc->natts, 1));

    for (int i = 0, c = 0; i < desc->natts; i++) {
        Form_pg_attribute attr = TupleDescAttr(desc, i);
        RowViewColumn *col;
        ws_column *meta;
        Oid outfunc;
        bool isvarlena;
        bool in_old_tuple;
        Const *default_const;

        if (attr->attisdropped)
            continue;

        col = &view->columns[c];
        meta = &view->after_columns[c];

        col->source_attno = map != NULL ? map->attnums[i] : attr->attnum;
        if (col->source_attno <= 0 || col->source_attno > source_desc->natts)
            elog(ERROR, "column \"%s\" of relation \"%s\" has no counterpart in relation \"%s\"",
                 NameStr(attr->attname), RelationGetRelationName(published),
                 RelationGetRelationName(source));
        /* a domain's values are its base type's (typlen and output functions agree) */
        col->type_oid = getBaseType(attr->atttypid);
        col->typlen = attr->attlen;
        col->kind = ws_type_value_kind(col->type_oid);
        getTypeOutputInfo(attr->atttypid, &outfunc, &isvarlena);
        fmgr_info(outfunc, &col->output);

        meta->elem_type_oid = element_type_of(attr->atttypid);
        if (array_elements && OidIsValid(meta->elem_type_oid)) {
            int16 elem_len;

            col->kind = WS_VALUE_ARRAY;
            col->element = element_column(meta->elem_type_oid);
            get_typlenbyvalalign(meta->elem_type_oid, &elem_len, &col->elem_byval,
                                 &col->elem_align);
        }

        meta->name = pstrdup(NameStr(attr->attname));
        meta->type_name = format_type_with_typemod(attr->atttypid, attr->atttypmod);
        meta->type_oid = attr->atttypid;
        meta->typmod = attr->atttypmod;
        meta->is_key = bms_is_member(col->source_attno, key);
        meta->not_null = attr->attnotnull;
        if (get_typtype(attr->atttypid) == TYPTYPE_DOMAIN)
            meta->base_type_oid = getBaseType(attr->atttypid);
        meta->default_expr = column_default(desc, attr, &default_const);
        if (default_const != NULL && !default_const->constisnull &&
            default_const->consttype == attr->atttypid && col->kind != WS_VALUE_ARRAY)
            fill_value(col, default_const->constvalue, false, &meta->default_value);
        else
            meta->default_value.kind = WS_VALUE_NULL;
        meta->enum_labels = enum_labels(getBaseType(attr->atttypid), &meta->nenum_labels);
        meta->value.kind = WS_VALUE_NULL;

        if (replident == REPLICA_IDENTITY_FULL)
            in_old_tuple = true;
        else
            in_old_tuple = bms_is_member(col->source_attno, identity);
        if (in_old_tuple) {
            view->before_index[view->nbefore] = c;
            view->before_columns[view->nbefore] = *meta;
            view->nbefore++;
        }
        c++;
    }

    view->after.columns = view->after_columns;
    view->after.ncolumns = ncolumns;
    view->before.columns = view->before_columns;
    view->before.ncolumns = view->nbefore;

    if (map != NULL)
        free_attrmap(map);
    bms_free(identity);
    if (key != identity)
        bms_free(key);
}

/* The type's text form, for the kinds that carry one. */
static void set_output_text(const RowViewColumn *col, Datum datum, ws_value *value)
{
    char *text = OutputFunctionCall((FmgrInfo *)&col->output, datum);

    value->data = text;
    value->len = strlen(text);
}

/* Points value->data at a varlena's payload, detoasting (but not copying) when needed. */
static void set_varlena_payload(Datum datum, ws_value *value)
{
    struct varlena *v = pg_detoast_datum_packed((struct varlena *)DatumGetPointer(datum));

    value->data = VARDATA_ANY(v);
    value->len = VARSIZE_ANY_EXHDR(v);
}

/*
 * money as its exact decimal number, without currency symbol or separators: the amount
 * counts units of the locale's fraction digits (lc_monetary), as cash_out reads it.
 */
static void set_money_text(Cash cash, ws_value *value)
{
    struct lconv *lconvert = PGLC_localeconv();
    int digits = lconvert->frac_digits;
    uint64 magnitude;
    uint64 scale = 1;
    char *text;

    if (digits < 0 || digits > 10) /* CHAR_MAX in the C locale: as cash_out, 2 */
        digits = 2;
    for (int i = 0; i < digits; i++)
        scale *= 10;
    magnitude = cash < 0 ? (uint64)(-(cash + 1)) + 1 : (uint64)cash;
    if (digits == 0)
        text = psprintf("%s%llu", cash < 0 ? "-" : "", (unsigned long long)magnitude);
    else
        text =
            psprintf("%s%llu.%0*llu", cash < 0 ? "-" : "", (unsigned long long)(magnitude / scale),
                     digits, (unsigned long long)(magnitude % scale));
    value->data = text;
    value->len = strlen(text);
}

/*
 * An array, element by element: each element as fill_value hands over a scalar of the
 * element type, and the array's shape. Everything is allocated in CurrentMemoryContext
 * (the change's), as text forms are.
 */
static void set_array_elements(const RowViewColumn *col, Datum datum, ws_value *value)
{
    ArrayType *array = DatumGetArrayTypeP(datum);
    const RowViewColumn *element = col->element;
    ws_array *out = palloc0(sizeof(ws_array));
    int ndims = ARR_NDIM(array);
    Datum *datums;
    bool *nulls;
    int n;
    ws_value *elements;
    int32_t *shape;

    /*
     * The array's own element type: a domain's (an array of a domain stores the domain's
     * OID, which deconstruct_array checks); its length and alignment are the base type's.
     */
    deconstruct_array(array, ARR_ELEMTYPE(array), element->typlen, col->elem_byval, col->elem_align,
                      &datums, &nulls, &n);
    /* an array may hold more elements than a plain palloc allows (1 GB of ws_value) */
    elements = palloc_extended(sizeof(ws_value) * Max(n, 1), MCXT_ALLOC_HUGE);
    for (int i = 0; i < n; i++)
        fill_value(element, datums[i], nulls[i], &elements[i]);
    shape = palloc(sizeof(int32_t) * Max(2 * ndims, 1));
    for (int d = 0; d < ndims; d++) {
        shape[d] = ARR_DIMS(array)[d];
        shape[ndims + d] = ARR_LBOUND(array)[d];
    }
    out->elements = elements;
    out->nelements = n;
    out->ndims = n > 0 ? ndims : 0; /* an empty array has no dimensions */
    out->dims = shape;
    out->lower_bounds = shape + ndims;
    value->v.array = out;
}

static void fill_value(const RowViewColumn *col, Datum datum, bool isnull, ws_value *value)
{
    value->data = NULL;
    value->len = 0;

    if (isnull) {
        value->kind = WS_VALUE_NULL;
        return;
    }

    /*
     * A TOAST pointer to on-disk data in a decoded tuple is a value the UPDATE
     * did not change: the WAL record does not carry it, and reading it from the
     * TOAST table now would read the present, not the past. It is neither NULL
     * nor a value, and the encoders say so.
     */
    if (col->typlen == -1 && VARATT_IS_EXTERNAL_ONDISK(DatumGetPointer(datum))) {
        value->kind = WS_VALUE_UNCHANGED_TOAST;
        return;
    }

    value->kind = col->kind;
    switch (col->kind) {
    case WS_VALUE_ARRAY:
        set_array_elements(col, datum, value);
        break;
    case WS_VALUE_INT64:
        switch (col->type_oid) {
        case INT2OID:
            value->v.i64 = DatumGetInt16(datum);
            break;
        case INT4OID:
            value->v.i64 = DatumGetInt32(datum);
            break;
        case OIDOID:
            value->v.i64 = DatumGetObjectId(datum);
            break;
        default:
            value->v.i64 = DatumGetInt64(datum);
            break;
        }
        break;
    case WS_VALUE_DOUBLE:
        if (col->type_oid == FLOAT4OID)
            value->v.f64 = DatumGetFloat4(datum);
        else
            value->v.f64 = DatumGetFloat8(datum);
        break;
    case WS_VALUE_BOOL:
        value->v.b = DatumGetBool(datum);
        break;
    case WS_VALUE_TEXT:
        if (col->type_oid == NAMEOID) {
            value->data = NameStr(*DatumGetName(datum));
            value->len = strlen(value->data);
        } else
            set_varlena_payload(datum, value);
        break;
    case WS_VALUE_BYTES:
        set_varlena_payload(datum, value);
        break;
    case WS_VALUE_TIMESTAMP:
    case WS_VALUE_TIMESTAMPTZ: {
        Timestamp ts = DatumGetTimestamp(datum); /* timestamptz is stored the same way: UTC */
        int64 us;

        if (TIMESTAMP_IS_NOBEGIN(ts))
            value->v.i64 = WS_TIMESTAMP_NEG_INFINITY;
        else if (TIMESTAMP_IS_NOEND(ts))
            value->v.i64 = WS_TIMESTAMP_POS_INFINITY;
        else if (!pg_add_s64_overflow(ts, WS_UNIX_EPOCH_OFFSET_US, &us) &&
                 us != WS_TIMESTAMP_POS_INFINITY)
            value->v.i64 = us;
        else {
            /*
             * The last ~30 years PostgreSQL accepts (after 294247-01-10) do not fit
             * Unix-epoch microseconds in an int64: send the text form rather
             * than a wrong number or the infinity marker.
             */
            value->kind = WS_VALUE_OTHER;
            set_output_text(col, datum, value);
        }
        break;
    }
    case WS_VALUE_DATE: {
        DateADT d = DatumGetDateADT(datum);

        if (DATE_IS_NOBEGIN(d))
            value->v.i32 = WS_DATE_NEG_INFINITY;
        else if (DATE_IS_NOEND(d))
            value->v.i32 = WS_DATE_POS_INFINITY;
        else /* finite dates end in 5874897 AD: no overflow */
            value->v.i32 = d + WS_UNIX_EPOCH_OFFSET_DAYS;
        break;
    }
    case WS_VALUE_UUID:
        memcpy(value->v.uuid, DatumGetUUIDP(datum)->data, UUID_LEN);
        break;
    case WS_VALUE_JSON:
        if (col->type_oid == JSONBOID) {
            Jsonb *jb = DatumGetJsonbP(datum);

            value->data = JsonbToCString(NULL, &jb->root, VARSIZE(jb));
            value->len = strlen(value->data);
        } else
            set_varlena_payload(datum, value);
        break;
    case WS_VALUE_TIME:
        value->v.i64 = DatumGetTimeADT(datum);
        set_output_text(col, datum, value);
        break;
    case WS_VALUE_TIMETZ: {
        TimeTzADT *t = DatumGetTimeTzADTP(datum);

        value->v.timetz.time_us = t->time;
        value->v.timetz.zone_s = t->zone;
        set_output_text(col, datum, value);
        break;
    }
    case WS_VALUE_INTERVAL: {
        Interval *iv = DatumGetIntervalP(datum);

        value->v.interval.time_us = iv->time;
        value->v.interval.days = iv->day;
        value->v.interval.months = iv->month;
        set_output_text(col, datum, value);
        break;
    }
    case WS_VALUE_NUMERIC:
        if (col->type_oid == CASHOID)
            set_money_text(DatumGetCash(datum), value);
        else
            set_output_text(col, datum, value);
        break;
    case WS_VALUE_OTHER:
        set_output_text(col, datum, value);
        break;
    case WS_VALUE_NULL:
    case WS_VALUE_UNCHANGED_TOAST:
        /* never chosen by the type table */
        Assert(false);
        value->kind = WS_VALUE_NULL;
        break;
    }
}

static void deform(RowView *view, TupleDesc source_desc, HeapTuple tuple)
{
    /* the relation cache rebuilds the view whenever the relation changes */
    if (source_desc->natts != view->source_natts)
        elog(ERROR, "walship row view is stale: relation has %d columns, view expects %d",
             source_desc->natts, view->source_natts);
    heap_deform_tuple(tuple, source_desc, view->values, view->isnull);
}

const ws_row *rowview_fill_new(RowView *view, TupleDesc source_desc, HeapTuple tuple)
{
    deform(view, source_desc, tuple);
    for (int c = 0; c < view->ncolumns; c++) {
        const RowViewColumn *col = &view->columns[c];
        int i = col->source_attno - 1;

        fill_value(col, view->values[i], view->isnull[i], &view->after_columns[c].value);
    }
    return &view->after;
}

const ws_row *rowview_fill_old(RowView *view, TupleDesc source_desc, HeapTuple tuple)
{
    if (view->nbefore == 0)
        return NULL;

    deform(view, source_desc, tuple);
    for (int b = 0; b < view->nbefore; b++) {
        const RowViewColumn *col = &view->columns[view->before_index[b]];
        int i = col->source_attno - 1;

        fill_value(col, view->values[i], view->isnull[i], &view->before_columns[b].value);
    }
    return &view->before;
}

void rowview_resolve_unchanged_toast(RowView *view)
{
    for (int b = 0; b < view->nbefore; b++) {
        ws_value *after = &view->after_columns[view->before_index[b]].value;
        const ws_value *before = &view->before_columns[b].value;

        if (after->kind == WS_VALUE_UNCHANGED_TOAST && before->kind != WS_VALUE_UNCHANGED_TOAST)
            *after = *before;
    }
}
