/*
 * encoder.cpp: checks on the shim's change view that both encoders rely on.
 */
#include "core_error.hpp"
#include "encoder.hpp"

namespace walship
{

namespace
{

void validate_row(const ws_row *row, const char *which)
{
    if (row == nullptr)
        return;
    if (row->ncolumns < 0 || (row->ncolumns > 0 && row->columns == nullptr))
        throw InputError(std::string("invalid change: the ") + which + " row has no column array");
    for (int i = 0; i < row->ncolumns; i++) {
        const ws_column &column = row->columns[i];
        if (column.name == nullptr)
            throw InputError(std::string("invalid change: column ") + std::to_string(i + 1) +
                             " of the " + which + " row has no name");
        const ws_value &value = column.value;
        int kind = static_cast<int>(value.kind);
        if (kind < WS_VALUE_NULL || kind > WS_VALUE_OTHER)
            throw InputError("invalid change: column \"" + std::string(column.name) +
                             "\" has unknown value kind " + std::to_string(kind));
        if (value.len > 0 && value.data == nullptr)
            throw InputError("invalid change: column \"" + std::string(column.name) +
                             "\" has a length but no data");
    }
}

} // namespace

void validate_change(const ws_change &change)
{
    switch (change.op) {
    case WS_OP_INSERT:
    case WS_OP_READ:
    case WS_OP_UPDATE:
        if (change.after == nullptr)
            throw InputError("invalid change: an INSERT, UPDATE or READ change needs the new row");
        break;
    case WS_OP_DELETE:
    case WS_OP_BEGIN:
    case WS_OP_COMMIT:
        break;
    case WS_OP_TRUNCATE:
        if (change.ntruncated < 0 || (change.ntruncated > 0 && change.truncated_tables == nullptr))
            throw InputError("invalid change: TRUNCATE without its list of tables");
        for (int i = 0; i < change.ntruncated; i++)
            if (change.truncated_tables[i] == nullptr)
                throw InputError("invalid change: TRUNCATE with a null table name");
        break;
    case WS_OP_MESSAGE:
        if (change.message_len > 0 && change.message_content == nullptr)
            throw InputError("invalid change: a MESSAGE with a length but no content");
        break;
    default:
        throw InputError("invalid change: unknown operation " + std::to_string(change.op));
    }
    validate_row(change.before, "old");
    validate_row(change.after, "new");
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
