/*
 * records.cpp: a change's Kafka records (see records.hpp).
 */
#include "records.hpp"

#include <cstring>
#include <utility>

namespace walship
{

namespace
{

ws_record record(std::string_view key, std::string_view value)
{
    ws_record r{};
    r.key = reinterpret_cast<const uint8_t *>(key.data());
    r.keylen = key.size();
    r.value = reinterpret_cast<const uint8_t *>(value.data());
    r.valuelen = value.size();
    return r;
}

ws_record tombstone(std::string_view key)
{
    ws_record r{};
    r.key = reinterpret_cast<const uint8_t *>(key.data());
    r.keylen = key.size();
    return r;
}

void with_header(ws_record &r, const char *name, std::string_view value)
{
    r.header = name;
    r.header_value = reinterpret_cast<const uint8_t *>(value.data());
    r.header_valuelen = value.size();
}

} // namespace

bool same_value(const ws_value &a, const ws_value &b)
{
    if (a.kind != b.kind)
        return false;
    switch (a.kind) {
    case WS_VALUE_INT64:
    case WS_VALUE_TIMESTAMP:
    case WS_VALUE_TIMESTAMPTZ:
        if (a.v.i64 != b.v.i64)
            return false;
        break;
    case WS_VALUE_DATE:
        if (a.v.i32 != b.v.i32)
            return false;
        break;
    case WS_VALUE_DOUBLE: /* the same bits: NaN is NaN, -0 is not 0 */
        if (std::memcmp(&a.v.f64, &b.v.f64, sizeof(double)) != 0)
            return false;
        break;
    case WS_VALUE_BOOL:
        if (a.v.b != b.v.b)
            return false;
        break;
    case WS_VALUE_UUID:
        if (std::memcmp(a.v.uuid, b.v.uuid, sizeof(a.v.uuid)) != 0)
            return false;
        break;
    case WS_VALUE_ARRAY: {
        const ws_array &x = *a.v.array;
        const ws_array &y = *b.v.array;
        if (x.ndims != y.ndims || x.nelements != y.nelements)
            return false;
        for (int d = 0; d < x.ndims; d++)
            if (x.dims[d] != y.dims[d] || x.lower_bounds[d] != y.lower_bounds[d])
                return false;
        for (int e = 0; e < x.nelements; e++)
            if (!same_value(x.elements[e], y.elements[e]))
                return false;
        return true;
    }
    default:
        break;
    }
    /* text forms (every kind without data has none: len 0); time, timetz and interval:
     * their output text says everything their fields say */
    return a.len == b.len && (a.len == 0 || std::memcmp(a.data, b.data, a.len) == 0);
}

bool changes_key(const ws_change &change, const Table &table)
{
    if (change.op != WS_OP_UPDATE || change.before == nullptr || change.after == nullptr ||
        !table.has_key)
        return false;
    for (size_t k = 0; k < table.columns.size(); k++) {
        const TableColumn &column = table.columns[k];
        if (!column.is_key)
            continue;
        int b = column.before_index;
        if (b < 0 || b >= change.before->ncolumns ||
            k >= static_cast<size_t>(change.after->ncolumns))
            return false; /* the old tuple does not carry the whole key */
        const ws_value &old_value = change.before->columns[b].value;
        const ws_value &new_value = change.after->columns[k].value;
        if (new_value.kind == WS_VALUE_UNCHANGED_TOAST)
            continue;
        if (!same_value(old_value, new_value))
            return true;
    }
    return false;
}

RecordMaker::RecordMaker(const Options &options, std::unique_ptr<Encoder> encoder)
    : encoder_(std::move(encoder)), tombstones_(options.tombstones),
      split_key_changes_(options.key_change == KeyChange::DeleteCreate)
{
}

void RecordMaker::encode(const ws_change &change, const TablePlan *plan, bool with_key,
                         ws_encoded &out)
{
    out = ws_encoded{};
    if (split_key_changes_ && change.op == WS_OP_UPDATE && change.before != nullptr) {
        const Table *table = plan != nullptr ? &plan->table() : nullptr;
        if (table == nullptr) {
            scratch_table_ = describe_change_table(change);
            table = &scratch_table_;
        }
        if (changes_key(change, *table)) {
            encode_key_change(change, plan, with_key, out);
            if (!with_key)
                for (int i = 0; i < out.nrecords; i++)
                    out.records[i].keylen = 0, out.records[i].key = nullptr;
            return;
        }
    }
    if (!split_key_changes_ && with_key && change.op == WS_OP_UPDATE && change.before != nullptr) {
        const Table *table = plan != nullptr ? &plan->table() : nullptr;
        if (table == nullptr) {
            scratch_table_ = describe_change_table(change);
            table = &scratch_table_;
        }
        if (changes_key(change, *table)) {
            /* the old key, as the delete of a split key change would be keyed */
            ws_change removed = change;
            removed.op = WS_OP_DELETE;
            removed.after = nullptr;
            Encoded deleted = encoder_->encode(removed, plan, true);
            old_key_.assign(deleted.key.data(), deleted.key.size());
            out.moved_from_key = reinterpret_cast<const uint8_t *>(old_key_.data());
            out.moved_from_keylen = old_key_.size();
        }
    }
    Encoded event = encoder_->encode(change, plan, with_key);
    out.records[out.nrecords++] = record(event.key, event.value);
    /* as Debezium, also for a table without a key (a tombstone with no key, which only
     * a compacted topic refuses) */
    if (tombstones_ && with_key && change.op == WS_OP_DELETE)
        out.records[out.nrecords++] = tombstone(event.key);
}

/*
 * delete (old key) + tombstone (old key) + create (new key). The delete is encoded first
 * and copied: the create reuses the encoder's buffers.
 */
void RecordMaker::encode_key_change(const ws_change &change, const TablePlan *plan, bool with_key,
                                    ws_encoded &out)
{
    ws_change removed = change;
    removed.op = WS_OP_DELETE;
    removed.after = nullptr;
    Encoded deleted = encoder_->encode(removed, plan, true);
    delete_value_.assign(deleted.value.data(), deleted.value.size());
    old_key_.assign(deleted.key.data(), deleted.key.size());

    ws_change added = change;
    added.op = WS_OP_INSERT;
    added.before = nullptr;
    if (added.total_order != 0) { /* two events of the transaction: the create comes second */
        added.total_order++;
        added.collection_order++;
    }
    Encoded created = encoder_->encode(added, plan, true);

    std::string_view new_key_header = encoder_->key_as_header(created.key, plan);
    header_new_key_.assign(new_key_header.data(), new_key_header.size());
    std::string_view old_key_header = encoder_->key_as_header(old_key_, plan);
    header_old_key_.assign(old_key_header.data(), old_key_header.size());

    ws_record &d = out.records[out.nrecords++];
    d = record(old_key_, delete_value_);
    with_header(d, "__debezium.newkey", header_new_key_);
    if (tombstones_ && with_key) {
        ws_record &t = out.records[out.nrecords++];
        t = tombstone(old_key_);
        with_header(t, "__debezium.newkey", header_new_key_);
    }
    ws_record &c = out.records[out.nrecords++];
    c = record(created.key, created.value);
    with_header(c, "__debezium.oldkey", header_old_key_);
}

} // namespace walship
