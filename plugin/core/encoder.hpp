/*
 * encoder.hpp: the event encoder interface behind ws_encoder, and the output buffer
 * both encoders share.
 *
 * An encoder turns one ws_change into the bytes of one Kafka message value (the
 * event) or key. It owns its buffers and reuses them for every call, so the hot path
 * allocates nothing once they have grown to the largest event seen.
 */
#ifndef WALSHIP_ENCODER_HPP
#define WALSHIP_ENCODER_HPP

#include "core_error.hpp"
#include "options.hpp"
#include "out_buf.hpp"
#include "walship_core.h"

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace walship
{

/*
 * Reused buffers keep their capacity, which is what makes the hot path free of
 * allocations, but one huge row (a 100 MB document) must not pin that much memory
 * in a long-running stream worker for good: above this size a buffer is released
 * before its next use.
 */
constexpr size_t kRetainedBufferLimit = size_t{8} << 20;

inline void release_if_large(std::string &buffer)
{
    if (buffer.capacity() > kRetainedBufferLimit)
        std::string().swap(buffer);
}

/* Bytes of v as a base-128 varint: one per started group of 7 bits (protobuf's formula). */
inline size_t varint_size(uint64_t v)
{
    int log2 = 63 - __builtin_clzll(v | 1);
    return static_cast<size_t>(log2 * 9 + 73) / 64;
}

inline uint8_t *put_varint(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = static_cast<uint8_t>(v | 0x80);
        v >>= 7;
    }
    *p++ = static_cast<uint8_t>(v);
    return p;
}

/* The room a varint length prefix may need in front of a body: 64 bits in base 128. */
constexpr size_t kVarintPrefixRoom = 10;

/*
 * The varint length of the body_len bytes at body, written right before them (the
 * caller left kVarintPrefixRoom bytes there); returns where the framed bytes start.
 */
inline char *frame_with_varint(char *body, size_t body_len)
{
    uint8_t prefix[kVarintPrefixRoom];
    size_t n = static_cast<size_t>(put_varint(prefix, body_len) - prefix);
    char *start = body - n;
    for (size_t i = 0; i < n; i++)
        start[i] = static_cast<char>(prefix[i]);
    return start;
}

/*
 * A reused byte buffer with room for an optional varint length prefix in front of
 * the body: the body is written after kPrefixRoom bytes, and finish() writes the
 * prefix right-aligned before it, so framing never moves the body.
 */
class EventBuffer
{
  public:
    static constexpr size_t kPrefixRoom = kVarintPrefixRoom;

    /* Starts a new body; returns the string to append it to (after the prefix room). */
    OutBuf &begin()
    {
        bytes_.release_if_large(kRetainedBufferLimit);
        bytes_.resize(kPrefixRoom);
        return bytes_;
    }

    /* The body written since begin(), with its varint length in front when framed. */
    std::string_view finish(bool framed)
    {
        size_t body = bytes_.size() - kPrefixRoom;
        char *data = bytes_.data() + kPrefixRoom;
        if (!framed)
            return std::string_view(data, body);
        char *start = frame_with_varint(data, body);
        return std::string_view(start, body + static_cast<size_t>(data - start));
    }

  private:
    OutBuf bytes_;
};

/* One column of a table, as described once by the shim (ws_table_desc). */
struct TableColumn {
    std::string name;
    std::string type_name;
    uint32_t type_oid = 0;
    int32_t typmod = -1;
    uint32_t elem_type_oid = 0;
    uint32_t base_type_oid = 0; /* domains: the base type; else 0 */
    bool is_key = false;
    bool not_null = false;
    bool has_default = false;
    std::string default_expr;
    ws_value default_constant{}; /* a constant DEFAULT's value (kind NULL: none), */
    std::string default_data;    /* its bytes, when it has some */
    bool default_has_data = false;
    std::vector<std::string> enum_labels;
    int before_index = -1; /* its position in the old tuple; -1 when the old tuple lacks it */

    /* The constant DEFAULT as a value (kind NULL when the default is not a constant). */
    ws_value default_value() const
    {
        ws_value v = default_constant;
        v.data = default_has_data ? default_data.data() : nullptr;
        v.len = default_has_data ? default_data.size() : 0;
        return v;
    }
};

/* What every row of one table version shares; the core's side of a ws_table. */
struct Table {
    std::string schema;
    std::string table;
    std::string topic; /* empty when the shim named none */
    std::vector<TableColumn> columns;
    std::vector<int> before; /* the old tuple's columns, as indexes into columns */
    bool has_key = false;    /* some column is_key */
};

/* Copies and checks a shim's description (before must be a subsequence of columns). */
Table describe_table(const ws_table_desc &desc);

/*
 * A description of the change's table from its own rows, for callers without table
 * handles (unit tests): the new row's columns (else the old row's), the old row's
 * columns matched to them by name.
 */
Table describe_change_table(const ws_change &change);

/*
 * What one encoder computed once for one table; each encoder derives its own. It points
 * to its table, which outlives it (both live in one ws_table).
 */
class TablePlan
{
  public:
    explicit TablePlan(const Table &table) : table_(table) {}
    virtual ~TablePlan() = default;

    const Table &table() const
    {
        return table_;
    }

  private:
    const Table &table_;
};

/* One encoded change; the views point into the encoder's buffers. */
struct Encoded {
    std::string_view key; /* empty when the change has none (or it was not asked for) */
    std::string_view value;
};

class Encoder
{
  public:
    virtual ~Encoder() = default;

    /* Everything this encoder needs per row of `table`, computed once. */
    virtual std::unique_ptr<TablePlan> plan_table(const Table &table) const = 0;

    /*
     * The event (framed if the options say so) and, with with_key, its Kafka key.
     * plan is the change's table's plan, or null for a change of no table or of a
     * caller without handles (the encoder then plans the change's own columns).
     * Valid until the next encode.
     */
    virtual Encoded encode(const ws_change &change, const TablePlan *plan, bool with_key) = 0;

    /*
     * A key of plan's table (as encode gave it) as a header of a key change names it:
     * what Kafka Connect's default header converter writes for Debezium's key struct.
     * The key itself, unless the format says otherwise.
     */
    virtual std::string_view key_as_header(std::string_view key, const TablePlan *plan) const
    {
        (void)plan;
        return key;
    }
};

std::unique_ptr<Encoder> make_protobuf_encoder(const Options &options, std::string database);
std::unique_ptr<Encoder> make_debezium_encoder(const Options &options, std::string database);

/*
 * Checks what every encoder relies on (rows present for their operation, ...), and with
 * a table that the rows have its shape.
 */
void validate_change(const ws_change &change, const Table *table);

/* The row whose is_key columns form the key: after, or before for DELETE. */
const ws_row *key_row(const ws_change &change);

} // namespace walship

/* A table handle of walship_core.h: the description and one encoder's plan of it. */
struct ws_table {
    walship::Table table;
    std::unique_ptr<walship::TablePlan> plan;
};

#endif
