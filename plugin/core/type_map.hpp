/*
 * type_map.hpp: the one type table: which PostgreSQL type travels as which
 * ws_value_kind (the shim asks, once per column), and how Debezium's JSON writes it.
 *
 * The value kind is all the protobuf encoder needs. Debezium's JSON depends on more:
 * the column's type OID and typmod decide between, say, io.debezium.time.Timestamp
 * (millis) and MicroTimestamp (micros), and options decide how numeric and interval
 * look. Builtin type OIDs are stable across PostgreSQL versions, so they are
 * constants here rather than headers.
 */
#ifndef WALSHIP_TYPE_MAP_HPP
#define WALSHIP_TYPE_MAP_HPP

#include "core_error.hpp"
#include "options.hpp"
#include "walship_core.h"

#include <cstdint>
#include <string>

namespace walship
{

/* How one value is written in Debezium's JSON, and which schema describes it. */
enum class JsonRepr : uint8_t {
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    Boolean,
    String,
    Bytes,
    Uuid,
    Json,
    Xml,
    Date,            /* io.debezium.time.Date, days */
    TimeMillis,      /* io.debezium.time.Time */
    TimeMicros,      /* io.debezium.time.MicroTime */
    ZonedTime,       /* io.debezium.time.ZonedTime, UTC string */
    TimestampMillis, /* io.debezium.time.Timestamp */
    TimestampMicros, /* io.debezium.time.MicroTimestamp */
    ZonedTimestamp,  /* io.debezium.time.ZonedTimestamp, UTC string */
    IntervalMicros,  /* io.debezium.time.MicroDuration */
    IntervalString,  /* io.debezium.time.Interval */
    NumericString,
    NumericDouble,
    NumericDecimal,  /* org.apache.kafka.connect.data.Decimal (numeric with typmod, precise) */
    NumericVariable, /* io.debezium.data.VariableScaleDecimal (numeric without typmod, precise) */
    Enum,            /* io.debezium.data.Enum, the label */
    BitBoolean,      /* bit(1): boolean */
    Bits,            /* io.debezium.data.Bits: bit(n), varbit as little-endian bytes */
    Point,           /* io.debezium.data.geometry.Point: x, y, wkb, srid */
    Tsvector,        /* io.debezium.data.Tsvector, the text */
};

struct ColumnRepr {
    JsonRepr repr = JsonRepr::String; /* of the element, for arrays */
    bool is_array = false;
    char array_delimiter = ',';
    int32_t precision = 0;      /* NumericDecimal (0: not declared, as for money) */
    int32_t scale = 0;          /* numeric's declared scale (0 without typmod), money's 2 */
    int8_t fraction_digits = 6; /* ZonedTimestamp: fixed width, or -1 for as few as needed */
    int32_t bit_length = 0;     /* Bits: the declared length */
    std::string allowed;        /* Enum: the labels in their order, comma-separated */
};

struct TableColumn;

/* The value kind of a type: its own for the builtin types of the table, else OTHER. */
ws_value_kind value_kind_for_type(uint32_t type_oid);

/* A column's representation; computed once per table version (see TablePlan). */
ColumnRepr json_repr_for(const TableColumn &column, const Options &options);

/*
 * The Kafka Connect schema of one field, as JsonConverter writes it, without the
 * closing brace so the caller can add "field". Field order follows JsonConverter:
 * type, fields/items, optional, name, version, doc, parameters, default.
 */
void append_field_schema_open(std::string &out, const ColumnRepr &repr, bool optional);

} // namespace walship

#endif
