/*
 * records.hpp: what one change becomes in Kafka.
 *
 * An encoder turns a change into one event. Kafka's conventions, as Debezium keeps them
 * by default, make some changes more than one record:
 *   - a DELETE is followed by a tombstone, the key with no value, so that log
 *     compaction forgets the row (option tombstones; Debezium's tombstones.on.delete);
 *   - an UPDATE that changes the key is a DELETE of the old key, its tombstone and a
 *     CREATE of the new key, each record in the partition of its own key, the delete
 *     and its tombstone naming the new key in a header, the create the old key
 *     (option key-change=delete_create; key-change=update keeps one update event,
 *     keyed by the new key, the old key in `before`).
 * Both formats follow them: they are about Kafka records, not about the event's format.
 * Tombstones exist only where keys are asked for (a stream's records): a client of the
 * plugin gets events.
 */
#ifndef WALSHIP_RECORDS_HPP
#define WALSHIP_RECORDS_HPP

#include "encoder.hpp"
#include "options.hpp"

#include <memory>
#include <string>

namespace walship
{

class RecordMaker
{
  public:
    RecordMaker(const Options &options, std::unique_ptr<Encoder> encoder);

    Encoder &encoder()
    {
        return *encoder_;
    }

    /* The change's records into out (views into this maker's and its encoder's buffers). */
    void encode(const ws_change &change, const TablePlan *plan, bool with_key, ws_encoded &out);

  private:
    void encode_key_change(const ws_change &change, const TablePlan *plan, bool with_key,
                           ws_encoded &out);

    std::unique_ptr<Encoder> encoder_;
    bool tombstones_;
    bool split_key_changes_;
    Table scratch_table_; /* a caller without handles: its change's own description */
    std::string delete_value_;
    std::string old_key_;
    std::string header_old_key_;
    std::string header_new_key_;
};

/*
 * Does this UPDATE change the key? Its old tuple carries the key columns (the server
 * logs them when the key changed, or when a key value is TOAST-ed, or with REPLICA
 * IDENTITY FULL) and some differ from the new row's (an unchanged TOAST value is the
 * old one).
 */
bool changes_key(const ws_change &change, const Table &table);

/* Are two values the same value (kind and contents)? */
bool same_value(const ws_value &a, const ws_value &b);

} // namespace walship

#endif
