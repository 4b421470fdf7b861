/*
 * encoder.cpp: table descriptions, and the checks on the shim's change view that both
 * encoders rely on.
 */
#include "core_error.hpp"
#include "encoder.hpp"

#include <cstdint>
#include <string>

namespace walship
{

namespace
{

/* A broken view from the shim is a bug in walship, not bad input from a user. */
[[noreturn]] void bug(const std::string &message)
{
    throw CoreError(WS_ERR_INTERNAL, message);
}

const char *or_empty(const char *s)
{
    return s != nullptr ? s : "";
}

TableColumn describe_column(const ws_column &c)
{
    TableColumn out;
    out.name = c.name;
    out.type_name = or_empty(c.type_name);
    out.type_oid = c.type_oid;
    out.typmod = c.typmod;
    out.elem_type_oid = c.elem_type_oid;
    out.base_type_oid = c.base_type_oid;
    out.is_key = c.is_key;
    out.not_null = c.not_null;
    out.has_default = c.default_expr != nullptr;
    out.default_expr = or_empty(c.default_expr);
    out.default_constant = c.default_value;
    out.default_has_data = c.default_value.data != nullptr;
    if (out.default_has_data)
        out.default_data.assign(c.default_value.data, c.default_value.len);
    for (int i = 0; i < c.nenum_labels && c.enum_labels != nullptr; i++)
        out.enum_labels.emplace_back(or_empty(c.enum_labels[i]));
    return out;
}

/* Marks the columns of `before` (a subsequence of the table's, by name) as the old tuple's. */
void match_before(Table &table, const ws_row *before, bool strict)
{
    size_t next = 0;
    int n = before != nullptr ? before->ncolumns : 0;
    for (int i = 0; i < n; i++) {
        const char *name = before->columns[i].name;
        while (next < table.columns.size() && table.columns[next].name != name)
            next++;
        if (next == table.columns.size()) {
            if (strict)
                bug("invalid table description: old tuple column \"" + std::string(name) +
                    "\" is not a column of " + table.schema + "." + table.table +
                    " (or out of order)");
            /* a test's old row of columns the new row lacks: describe it alone */
            table.before.clear();
            for (TableColumn &column : table.columns)
                column.before_index = -1;
            return;
        }
        table.columns[next].before_index = static_cast<int>(table.before.size());
        table.before.push_back(static_cast<int>(next));
        next++;
    }
}

/* PostgreSQL's MAXDIM */
constexpr int kMaxArrayDims = 6;

/* Where a value is, for a message: built only when something is wrong. */
struct ValuePlace {
    int column; /* 1-based */
    const char *which;
    int element; /* 1-based; 0: the column's value itself */

    std::string text() const
    {
        std::string out = "column " + std::to_string(column) + " of the " + which + " row";
        if (element > 0)
            out = "element " + std::to_string(element) + " of " + out;
        return out;
    }
};

void validate_value(const ws_value &value, const ValuePlace &place)
{
    int kind = static_cast<int>(value.kind);
    if (kind < WS_VALUE_NULL || kind > WS_VALUE_ARRAY)
        bug("invalid change: " + place.text() + " has unknown value kind " + std::to_string(kind));
    if (value.len > 0 && value.data == nullptr)
        bug("invalid change: " + place.text() + " has a length but no data");
    if (value.kind != WS_VALUE_ARRAY)
        return;
    if (place.element > 0)
        bug("invalid change: " + place.text() + " is an array inside an array");
    const ws_array *array = value.v.array;
    if (array == nullptr)
        bug("invalid change: " + place.text() + " is an array without its elements");
    if (array->ndims < 0 || array->ndims > kMaxArrayDims ||
        (array->ndims > 0 && (array->dims == nullptr || array->lower_bounds == nullptr)))
        bug("invalid change: " + place.text() + " has an array of " + std::to_string(array->ndims) +
            " dimensions without their lengths and lower bounds");
    int64_t count = array->ndims > 0 ? 1 : 0;
    for (int d = 0; d < array->ndims; d++) {
        if (array->dims[d] < 0)
            bug("invalid change: " + place.text() + " has an array dimension of negative length");
        count *= array->dims[d];
        if (count > INT32_MAX)
            bug("invalid change: " + place.text() + " has an array of more than 2^31 elements");
    }
    if (count != array->nelements || (array->nelements > 0 && array->elements == nullptr))
        bug("invalid change: " + place.text() + " has " + std::to_string(array->nelements) +
            " array elements, its dimensions say " + std::to_string(count));
    for (int e = 0; e < array->nelements; e++) {
        const ws_value &element = array->elements[e];
        ValuePlace at{place.column, place.which, e + 1};
        if (element.kind == WS_VALUE_UNCHANGED_TOAST)
            bug("invalid change: " + at.text() + " is an unchanged TOAST value");
        validate_value(element, at);
    }
}

void validate_row(const ws_row *row, const char *which, bool names)
{
    if (row == nullptr)
        return;
    if (row->ncolumns < 0 || (row->ncolumns > 0 && row->columns == nullptr))
        bug(std::string("invalid change: the ") + which + " row has no column array");
    for (int i = 0; i < row->ncolumns; i++) {
        const ws_column &column = row->columns[i];
        if (names && column.name == nullptr)
            bug(std::string("invalid change: column ") + std::to_string(i + 1) + " of the " +
                which + " row has no name");
        validate_value(column.value, ValuePlace{i + 1, which, 0});
    }
}

/* The table of schema.table whose columns `columns` describes and whose old tuple `before` has. */
Table describe(const char *schema, const char *name, const ws_row *columns, const ws_row *before,
               bool strict)
{
    Table table;
    table.schema = or_empty(schema);
    table.table = or_empty(name);
    int n = columns != nullptr ? columns->ncolumns : 0;
    table.columns.reserve(static_cast<size_t>(n));
    for (int i = 0; i < n; i++) {
        table.columns.push_back(describe_column(columns->columns[i]));
        table.has_key = table.has_key || columns->columns[i].is_key;
    }
    match_before(table, before, strict);
    return table;
}

} // namespace

Table describe_table(const ws_table_desc &desc)
{
    validate_row(desc.columns, "table's", true);
    validate_row(desc.before, "old tuple's", true);
    Table table = describe(desc.schema, desc.table, desc.columns, desc.before, true);
    table.topic = or_empty(desc.topic);
    return table;
}

Table describe_change_table(const ws_change &change)
{
    return describe(change.source.schema, change.source.table,
                    change.after != nullptr ? change.after : change.before, change.before, false);
}

void validate_change(const ws_change &change, const Table *table)
{
    switch (change.op) {
    case WS_OP_INSERT:
    case WS_OP_READ:
    case WS_OP_UPDATE:
        if (change.after == nullptr)
            bug("invalid change: an INSERT, UPDATE or READ change needs the new row");
        break;
    case WS_OP_DELETE:
    case WS_OP_BEGIN:
    case WS_OP_COMMIT:
        break;
    case WS_OP_TRUNCATE:
        if (change.ntruncated < 0 || (change.ntruncated > 0 && change.truncated_tables == nullptr))
            bug("invalid change: TRUNCATE without its list of tables");
        for (int i = 0; i < change.ntruncated; i++)
            if (change.truncated_tables[i] == nullptr)
                bug("invalid change: TRUNCATE with a null table name");
        break;
    case WS_OP_MESSAGE:
        if (change.message_len > 0 && change.message_content == nullptr)
            bug("invalid change: a MESSAGE with a length but no content");
        break;
    default:
        bug("invalid change: unknown operation " + std::to_string(change.op));
    }
    bool described = table != nullptr;
    validate_row(change.before, "old", !described);
    validate_row(change.after, "new", !described);
    if (!described)
        return;
    /* the relation cache rebuilds a table's view and handle together: a mismatch is a bug */
    if (change.after != nullptr &&
        change.after->ncolumns != static_cast<int>(table->columns.size()))
        bug("invalid change: the new row has " + std::to_string(change.after->ncolumns) +
            " columns, its table " + std::to_string(table->columns.size()));
    if (change.before != nullptr &&
        change.before->ncolumns != static_cast<int>(table->before.size()))
        bug("invalid change: the old row has " + std::to_string(change.before->ncolumns) +
            " columns, its table's old tuple " + std::to_string(table->before.size()));
}

const ws_row *key_row(const ws_change &change)
{
    switch (change.op) {
    case WS_OP_INSERT:
    case WS_OP_UPDATE:
    case WS_OP_READ:
        return change.after;
    case WS_OP_DELETE:
        return change.before;
    default:
        return nullptr;
    }
}

} // namespace walship
