/*
 * type_map.cpp: PostgreSQL builtin types to Debezium JSON representations and their
 * Kafka Connect schemas (see type_map.hpp).
 */
#include "core_error.hpp"
#include "type_map.hpp"
#include "encoder.hpp"
#include "json_out.hpp"

namespace walship
{

namespace
{

/* What a PostgreSQL type is, as far as Debezium's mapping cares. */
enum class TypeFamily : uint8_t {
    Bool,
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Text,
    Bytea,
    Uuid,
    Json,
    Xml,
    Date,
    Time,
    TimeTz,
    Timestamp,
    TimestampTz,
    Interval,
    Numeric,
    Money,
    Bit,
    Point,
    Tsvector,
};

struct BuiltinType {
    uint32_t oid; /* pg_type.oid, fixed for builtin types since PostgreSQL 7 */
    const char *name;
    ws_value_kind kind; /* how the shim hands a value over */
    TypeFamily family;  /* how Debezium's JSON writes it */
};

/*
 * THE type table, the only one: the shim asks it for each column's value kind
 * (ws_type_value_kind) and the JSON encoder for each column's representation. A
 * domain is its base type. Every type not listed (enums, composites, ranges, inet,
 * geometric types, extension types) travels as its output text (WS_VALUE_OTHER) and
 * is written as a JSON string (enums as Debezium's Enum).
 */
constexpr BuiltinType kBuiltinTypes[] = {
    {16, "boolean", WS_VALUE_BOOL, TypeFamily::Bool},
    {17, "bytea", WS_VALUE_BYTES, TypeFamily::Bytea},
    {18, "\"char\"", WS_VALUE_OTHER, TypeFamily::Text},
    {19, "name", WS_VALUE_TEXT, TypeFamily::Text},
    {20, "bigint", WS_VALUE_INT64, TypeFamily::Int8},
    {21, "smallint", WS_VALUE_INT64, TypeFamily::Int2},
    {23, "integer", WS_VALUE_INT64, TypeFamily::Int4},
    {25, "text", WS_VALUE_TEXT, TypeFamily::Text},
    {26, "oid", WS_VALUE_INT64, TypeFamily::Int8}, /* unsigned 32-bit: needs int64 */
    {114, "json", WS_VALUE_JSON, TypeFamily::Json},
    {142, "xml", WS_VALUE_OTHER, TypeFamily::Xml},
    {600, "point", WS_VALUE_OTHER, TypeFamily::Point},
    {700, "real", WS_VALUE_DOUBLE, TypeFamily::Float4},
    {790, "money", WS_VALUE_NUMERIC, TypeFamily::Money}, /* the shim sends its decimal */
    {701, "double precision", WS_VALUE_DOUBLE, TypeFamily::Float8},
    {1042, "character", WS_VALUE_TEXT, TypeFamily::Text},
    {1043, "character varying", WS_VALUE_TEXT, TypeFamily::Text},
    {1082, "date", WS_VALUE_DATE, TypeFamily::Date},
    {1083, "time without time zone", WS_VALUE_TIME, TypeFamily::Time},
    {1114, "timestamp without time zone", WS_VALUE_TIMESTAMP, TypeFamily::Timestamp},
    {1184, "timestamp with time zone", WS_VALUE_TIMESTAMPTZ, TypeFamily::TimestampTz},
    {1186, "interval", WS_VALUE_INTERVAL, TypeFamily::Interval},
    {1266, "time with time zone", WS_VALUE_TIMETZ, TypeFamily::TimeTz},
    {1560, "bit", WS_VALUE_OTHER, TypeFamily::Bit},
    {1562, "bit varying", WS_VALUE_OTHER, TypeFamily::Bit},
    {1700, "numeric", WS_VALUE_NUMERIC, TypeFamily::Numeric},
    {2950, "uuid", WS_VALUE_UUID, TypeFamily::Uuid},
    {3614, "tsvector", WS_VALUE_OTHER, TypeFamily::Tsvector},
    {3802, "jsonb", WS_VALUE_JSON, TypeFamily::Json},
};

constexpr uint32_t kBoxOid = 603; /* the one builtin type whose array delimiter is ';' */
constexpr uint32_t kBitOid = 1560;
constexpr int32_t kUnboundedBits = 2147483647; /* varbit without a length */

const BuiltinType *builtin_type(uint32_t oid)
{
    for (const BuiltinType &type : kBuiltinTypes)
        if (type.oid == oid)
            return &type;
    return nullptr;
}

TypeFamily family_of(uint32_t oid)
{
    const BuiltinType *type = builtin_type(oid);
    return type != nullptr ? type->family : TypeFamily::Text;
}

/*
 * Array elements arrive as text inside the array's text form, so only element
 * types whose JSON value can be read back from that text keep their own
 * representation; temporal elements stay strings.
 */
bool array_element_supported(TypeFamily family)
{
    switch (family) {
    case TypeFamily::Bool:
    case TypeFamily::Int2:
    case TypeFamily::Int4:
    case TypeFamily::Int8:
    case TypeFamily::Float4:
    case TypeFamily::Float8:
    case TypeFamily::Text:
    case TypeFamily::Bytea:
    case TypeFamily::Uuid:
    case TypeFamily::Json:
    case TypeFamily::Xml:
    case TypeFamily::Numeric:
    case TypeFamily::Date:
        return true;
    default:
        return false;
    }
}

struct ReprSchema {
    const char *type;
    const char *name; /* Kafka Connect logical name, or null */
};

ReprSchema repr_schema(JsonRepr repr)
{
    switch (repr) {
    case JsonRepr::Int16:
        return {"int16", nullptr};
    case JsonRepr::Int32:
        return {"int32", nullptr};
    case JsonRepr::Int64:
        return {"int64", nullptr};
    case JsonRepr::Float32:
        return {"float", nullptr};
    case JsonRepr::Float64:
        return {"double", nullptr};
    case JsonRepr::Boolean:
        return {"boolean", nullptr};
    case JsonRepr::String:
        return {"string", nullptr};
    case JsonRepr::Bytes:
        return {"bytes", nullptr};
    case JsonRepr::Uuid:
        return {"string", "io.debezium.data.Uuid"};
    case JsonRepr::Json:
        return {"string", "io.debezium.data.Json"};
    case JsonRepr::Xml:
        return {"string", "io.debezium.data.Xml"};
    case JsonRepr::Date:
        return {"int32", "io.debezium.time.Date"};
    case JsonRepr::TimeMillis:
        return {"int32", "io.debezium.time.Time"};
    case JsonRepr::TimeMicros:
        return {"int64", "io.debezium.time.MicroTime"};
    case JsonRepr::ZonedTime:
        return {"string", "io.debezium.time.ZonedTime"};
    case JsonRepr::TimestampMillis:
        return {"int64", "io.debezium.time.Timestamp"};
    case JsonRepr::TimestampMicros:
        return {"int64", "io.debezium.time.MicroTimestamp"};
    case JsonRepr::ZonedTimestamp:
        return {"string", "io.debezium.time.ZonedTimestamp"};
    case JsonRepr::IntervalMicros:
        return {"int64", "io.debezium.time.MicroDuration"};
    case JsonRepr::IntervalString:
        return {"string", "io.debezium.time.Interval"};
    case JsonRepr::NumericString:
        return {"string", nullptr};
    case JsonRepr::NumericDouble:
        return {"double", nullptr};
    case JsonRepr::NumericDecimal:
        return {"bytes", "org.apache.kafka.connect.data.Decimal"};
    case JsonRepr::NumericVariable:
        return {"struct", "io.debezium.data.VariableScaleDecimal"};
    case JsonRepr::Enum:
        return {"string", "io.debezium.data.Enum"};
    case JsonRepr::BitBoolean:
        return {"boolean", nullptr};
    case JsonRepr::Bits:
        return {"bytes", "io.debezium.data.Bits"};
    case JsonRepr::Point:
        return {"struct", "io.debezium.data.geometry.Point"};
    case JsonRepr::Tsvector:
        return {"string", "io.debezium.data.Tsvector"};
    }
    return {"string", nullptr};
}

void append_scalar_schema_open(std::string &out, const ColumnRepr &repr, bool optional)
{
    ReprSchema schema = repr_schema(repr.repr);
    out += "{\"type\":\"";
    out += schema.type;
    out += '"';
    if (repr.repr == JsonRepr::NumericVariable)
        out += ",\"fields\":[{\"type\":\"int32\",\"optional\":false,\"field\":\"scale\"},"
               "{\"type\":\"bytes\",\"optional\":false,\"field\":\"value\"}]";
    if (repr.repr == JsonRepr::Point)
        out += ",\"fields\":[{\"type\":\"double\",\"optional\":false,\"field\":\"x\"},"
               "{\"type\":\"double\",\"optional\":false,\"field\":\"y\"},"
               "{\"type\":\"bytes\",\"optional\":true,\"field\":\"wkb\"},"
               "{\"type\":\"int32\",\"optional\":true,\"field\":\"srid\"}]";
    out += optional ? ",\"optional\":true" : ",\"optional\":false";
    if (schema.name != nullptr) {
        out += ",\"name\":\"";
        out += schema.name;
        out += "\",\"version\":1";
    }
    if (repr.repr == JsonRepr::NumericVariable)
        out += ",\"doc\":\"Variable scaled decimal\"";
    if (repr.repr == JsonRepr::Point)
        out += ",\"doc\":\"Geometry (POINT)\"";
    if (repr.repr == JsonRepr::NumericDecimal) {
        out += ",\"parameters\":{\"scale\":\"";
        json::append_int(out, repr.scale);
        if (repr.precision > 0) {
            out += "\",\"connect.decimal.precision\":\"";
            json::append_int(out, repr.precision);
        }
        out += "\"}";
    }
    if (repr.repr == JsonRepr::Enum) {
        out += ",\"parameters\":{\"allowed\":";
        json::append_string(out, repr.allowed);
        out += '}';
    }
    if (repr.repr == JsonRepr::Bits) {
        out += ",\"parameters\":{\"length\":\"";
        json::append_int(out, repr.bit_length);
        out += "\"}";
    }
}

/*
 * A decimal's representation in each decimal-handling mode: precision -1 when it has
 * none declared (numeric without typmod: precise is then VariableScaleDecimal), 0 when
 * only its scale is known (money).
 */
void set_decimal(ColumnRepr &out, const Options &options, int32_t precision, int32_t scale)
{
    out.scale = scale;
    switch (options.decimal_handling) {
    case DecimalHandling::String:
        out.repr = JsonRepr::NumericString;
        break;
    case DecimalHandling::Double:
        out.repr = JsonRepr::NumericDouble;
        break;
    case DecimalHandling::Precise:
        out.repr = precision < 0 ? JsonRepr::NumericVariable : JsonRepr::NumericDecimal;
        out.precision = precision < 0 ? 0 : precision;
        break;
    }
}

} // namespace

ws_value_kind value_kind_for_type(uint32_t type_oid)
{
    const BuiltinType *type = builtin_type(type_oid);
    return type != nullptr ? type->kind : WS_VALUE_OTHER;
}

ColumnRepr json_repr_for(const TableColumn &column, const Options &options)
{
    ColumnRepr out;
    uint32_t oid = column.base_type_oid != 0 ? column.base_type_oid : column.type_oid;
    if (column.elem_type_oid != 0) {
        out.is_array = true;
        oid = column.elem_type_oid;
        if (oid == kBoxOid)
            out.array_delimiter = ';';
    }
    TypeFamily family = family_of(oid);
    if (out.is_array && !array_element_supported(family))
        family = TypeFamily::Text;
    int32_t typmod = column.typmod; /* for arrays, PostgreSQL keeps the element's typmod */

    if (!column.enum_labels.empty() && !out.is_array) {
        out.repr = JsonRepr::Enum;
        for (const std::string &label : column.enum_labels) {
            if (!out.allowed.empty())
                out.allowed += ',';
            out.allowed += label;
        }
        return out;
    }

    switch (family) {
    case TypeFamily::Bool:
        out.repr = JsonRepr::Boolean;
        break;
    case TypeFamily::Int2:
        out.repr = JsonRepr::Int16;
        break;
    case TypeFamily::Int4:
        out.repr = JsonRepr::Int32;
        break;
    case TypeFamily::Int8:
        out.repr = JsonRepr::Int64;
        break;
    case TypeFamily::Float4:
        out.repr = JsonRepr::Float32;
        break;
    case TypeFamily::Float8:
        out.repr = JsonRepr::Float64;
        break;
    case TypeFamily::Text:
        out.repr = JsonRepr::String;
        break;
    case TypeFamily::Bytea:
        out.repr = JsonRepr::Bytes;
        break;
    case TypeFamily::Uuid:
        out.repr = JsonRepr::Uuid;
        break;
    case TypeFamily::Json:
        out.repr = JsonRepr::Json;
        break;
    case TypeFamily::Xml:
        out.repr = JsonRepr::Xml;
        break;
    case TypeFamily::Date:
        out.repr = JsonRepr::Date;
        break;
    case TypeFamily::Time: /* time.precision.mode=adaptive: time(0..3) in millis */
        out.repr = typmod >= 0 && typmod <= 3 ? JsonRepr::TimeMillis : JsonRepr::TimeMicros;
        break;
    case TypeFamily::TimeTz:
        out.repr = JsonRepr::ZonedTime;
        break;
    case TypeFamily::Timestamp:
        out.repr =
            typmod >= 0 && typmod <= 3 ? JsonRepr::TimestampMillis : JsonRepr::TimestampMicros;
        break;
    case TypeFamily::TimestampTz:
        /* Debezium pads the fraction to the column's precision (6 without typmod);
         * timestamptz(0) uses the plain ISO formatter, which drops a zero fraction. */
        out.repr = JsonRepr::ZonedTimestamp;
        out.fraction_digits = static_cast<int8_t>(typmod < 0 ? 6 : typmod == 0 ? -1 : typmod);
        break;
    case TypeFamily::Interval:
        out.repr = options.interval_handling == IntervalHandling::String ? JsonRepr::IntervalString
                                                                         : JsonRepr::IntervalMicros;
        break;
    case TypeFamily::Numeric:
        if (typmod >= 4) /* VARHDRSZ + (precision << 16 | scale), scale 11-bit signed */
            set_decimal(out, options, ((typmod - 4) >> 16) & 0xFFFF,
                        (((typmod - 4) & 0x7FF) ^ 1024) - 1024);
        else
            set_decimal(out, options, -1, 0);
        break;
    case TypeFamily::Money: /* a decimal of money.fraction.digits (2), no precision */
        set_decimal(out, options, 0, 2);
        break;
    case TypeFamily::Point:
        out.repr = JsonRepr::Point;
        break;
    case TypeFamily::Tsvector:
        out.repr = JsonRepr::Tsvector;
        break;
    case TypeFamily::Bit:
        if (oid == kBitOid && typmod == 1) {
            out.repr = JsonRepr::BitBoolean;
        } else {
            out.repr = JsonRepr::Bits;
            out.bit_length = typmod > 0 ? typmod : kUnboundedBits;
        }
        break;
    }
    return out;
}

void append_field_schema_open(std::string &out, const ColumnRepr &repr, bool optional)
{
    if (!repr.is_array) {
        append_scalar_schema_open(out, repr, optional);
        return;
    }
    out += "{\"type\":\"array\",\"items\":";
    append_scalar_schema_open(out, repr, true);
    out += "},\"optional\":";
    out += optional ? "true" : "false";
}

} // namespace walship
