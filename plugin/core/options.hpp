/*
 * options.hpp: the one parser for walship's output plugin options.
 *
 * The same options come from pg_recvlogical -o, from the SQL decoding functions and
 * from a stream's stored options, so there is exactly one place that knows their
 * names, accepted values and defaults (pgoutput's parse_output_parameters is the model).
 * Errors name the option and list what is accepted, in PostgreSQL's message style.
 */
#ifndef WALSHIP_OPTIONS_HPP
#define WALSHIP_OPTIONS_HPP

#include "core_error.hpp"

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace walship
{

enum class EventFormat { Protobuf, Json };
enum class DecimalHandling { String, Precise, Double };
enum class IntervalHandling { Numeric, String };
enum class OriginFilter { Any, None };
enum class Framing { None, Varint };
/* An UPDATE that changes the key: Debezium's delete + tombstone + create, or one update. */
enum class KeyChange { DeleteCreate, Update };

/*
 * A name pattern from the tables / exclude-tables / messages options. Unquoted '*'
 * matches any run of characters; it is stored as NUL, which no PostgreSQL name or
 * message prefix can contain, so a quoted "*" stays a literal asterisk.
 */
struct NamePattern {
    std::string glob;
    bool matches(std::string_view name) const;
};

struct TablePattern {
    NamePattern schema;
    NamePattern table;
};

struct Options {
    EventFormat format = EventFormat::Protobuf;
    bool json_schema = true;
    DecimalHandling decimal_handling = DecimalHandling::String;
    IntervalHandling interval_handling = IntervalHandling::Numeric;
    bool include_transaction = false;
    bool include_before = true;
    /* TRUNCATE events; not given: on for protobuf, off for JSON (Debezium's default
     * skipped.operations=t, which consumers written for Debezium rely on) */
    int truncate = -1; /* -1: not given */
    bool truncate_events() const
    {
        return truncate < 0 ? format != EventFormat::Json : truncate == 1;
    }
    bool tombstones = true; /* a Kafka tombstone (the key, no value) after each delete */
    /* JSON: a NULL of a column with a DEFAULT is written as the default (JsonConverter's
     * replace.null.with.default, on by default) */
    bool replace_null_with_default = true;
    KeyChange key_change = KeyChange::DeleteCreate;
    bool messages = false;
    std::vector<NamePattern> message_prefixes; /* empty with messages=true: every prefix */
    std::vector<TablePattern> tables;          /* empty: every table */
    std::vector<TablePattern> exclude_tables;
    OriginFilter origin = OriginFilter::Any;
    bool partition_root = false;
    Framing framing = Framing::None;
    std::string topic_prefix; /* empty: the encoder uses the database name */
    /* protobuf: uuid values as their text (string_value) instead of 16 bytes (uuid) */
    bool uuid_as_text = false;
    /* JSON: source.commit_lsn, the end LSN of the commit record (not in Debezium's source) */
    bool source_commit_lsn = false;

    /*
     * Sets one option from its name and text value (value may be null: "-o name"
     * without a value, which means true for a boolean). Throws CoreError (WS_ERR_INVALID_OPTION,
     * WS_ERR_CONFLICTING_OPTION).
     */
    void set(const char *name, const char *value);

    bool table_included(std::string_view schema, std::string_view table) const;
    bool table_excluded(std::string_view schema, std::string_view table) const;
    bool message_included(std::string_view prefix) const;

  private:
    uint32_t seen_ = 0; /* one bit per option, for "conflicting or redundant options" */
};

} // namespace walship

#endif
