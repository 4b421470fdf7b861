/*
 * debezium_defaults.cpp: a column's DEFAULT as Debezium's PostgreSQL connector puts it in
 * the Kafka Connect schema ("default"), and so, through JsonConverter's
 * replace.null.with.default, in place of a NULL value.
 *
 * Debezium reads the default's SQL text (pg_get_expr, as the shim's deparsed text) and
 * keeps it only for the types it has a converter for:
 *   - a literal ('abc'::text, 42, '2020-01-01'::date) is that value, in the column's
 *     representation; the shim hands over the value of a constant default, so walship
 *     writes it exactly as a row value;
 *   - a function call (nextval(...), now(), gen_random_uuid()) or CURRENT_TIMESTAMP and
 *     its kin become a placeholder of the type: 0, 0.0, "", false, the epoch, a zero uuid;
 *   - NULL, other expressions, arrays, bytea, money, domains and every other type: none.
 */
#include "debezium.hpp"
#include "json_out.hpp"
#include "pg_values.hpp"

#include <cctype>
#include <charconv>
#include <string>
#include <string_view>

namespace walship
{
namespace debezium
{

namespace
{

/* The builtin types Debezium has a default value converter for (enums aside). */
bool has_default_converter(uint32_t type_oid)
{
    switch (type_oid) {
    case 16:   /* bool */
    case 20:   /* int8 */
    case 21:   /* int2 */
    case 23:   /* int4 */
    case 25:   /* text */
    case 114:  /* json */
    case 142:  /* xml */
    case 700:  /* float4 */
    case 701:  /* float8 */
    case 1042: /* bpchar */
    case 1043: /* varchar */
    case 1082: /* date */
    case 1083: /* time */
    case 1114: /* timestamp */
    case 1184: /* timestamptz */
    case 1186: /* interval */
    case 1560: /* bit */
    case 1562: /* varbit */
    case 1700: /* numeric */
    case 2950: /* uuid */
    case 3802: /* jsonb */
        return true;
    default:
        return false;
    }
}

bool iequals_prefix(std::string_view text, std::string_view word)
{
    if (text.size() < word.size())
        return false;
    for (size_t i = 0; i < word.size(); i++)
        if (std::tolower(static_cast<unsigned char>(text[i])) != word[i])
            return false;
    return true;
}

/* Debezium's test for a default it cannot evaluate: a call, or an SQL value function. */
bool is_function_default(std::string_view text)
{
    size_t i = 0;
    if (i < text.size() && text[i] == '(')
        i++;
    size_t name = i;
    while (i < text.size() &&
           (std::isalnum(static_cast<unsigned char>(text[i])) || text[i] == '_' || text[i] == '.'))
        i++;
    if (i > name && i < text.size() && text[i] == '(' && text.back() == ')')
        return true;
    for (std::string_view word :
         {"current_timestamp", "current_time", "current_date", "localtimestamp", "localtime"})
        if (iequals_prefix(text, word))
            return true;
    return false;
}

/* A literal as Debezium reads one: quoted ('...'::type, B'101'), a number, true or false. */
bool is_literal(std::string_view text)
{
    char c = text.front();
    if (c == '\'' || c == '-' || c == '+' || c == '.' ||
        std::isdigit(static_cast<unsigned char>(c)))
        return true;
    if ((c == 'B' || c == 'b' || c == 'E' || c == 'e') && text.size() > 1 && text[1] == '\'')
        return true;
    return text == "true" || text == "false";
}

/* A default's value as the value writer writes it; empty for null (e.g. NaN in a Decimal). */
std::string written_default(ValueWriter &writer, const ColumnRepr &repr, const ws_value &value)
{
    OutBuf out;
    writer.write(out, repr, false, std::string_view(), value);
    return out.view() == "null" ? std::string() : out.str();
}

/* The placeholder Debezium gives a default it cannot evaluate, as JSON; empty: none. */
std::string placeholder(const ColumnRepr &repr)
{
    std::string out;
    switch (repr.repr) {
    case JsonRepr::Int16:
    case JsonRepr::Int32:
    case JsonRepr::Int64:
    case JsonRepr::Date:
    case JsonRepr::TimeMillis:
    case JsonRepr::TimeMicros:
    case JsonRepr::TimestampMillis:
    case JsonRepr::TimestampMicros:
        out = "0";
        break;
    case JsonRepr::Float32:
    case JsonRepr::Float64:
    case JsonRepr::NumericDouble:
        out = "0.0";
        break;
    case JsonRepr::NumericString:
        out = "\"0.0\"";
        break;
    case JsonRepr::NumericDecimal:
        out = "\"AA==\""; /* an unscaled 0 */
        break;
    case JsonRepr::Boolean:
        out = "false";
        break;
    case JsonRepr::String:
    case JsonRepr::Xml:
    case JsonRepr::Enum:
        out = "\"\"";
        break;
    case JsonRepr::Uuid:
        out = "\"00000000-0000-0000-0000-000000000000\"";
        break;
    case JsonRepr::Json:
        out = "\"{}\"";
        break;
    case JsonRepr::ZonedTimestamp:
        out = "\"";
        pgval::append_zoned_timestamp(out, 0, repr.fraction_digits);
        out += '"';
        break;
    default: /* intervals, bits, variable-scale decimals: none */
        break;
    }
    return out;
}

/* A bare number as PostgreSQL deparses one (42, -1.5, 1e3, or (-1)); else empty. */
std::string_view bare_number(std::string_view text)
{
    if (text.size() > 2 && text.front() == '(' && text.back() == ')')
        text = text.substr(1, text.size() - 2);
    size_t i = 0;
    if (i < text.size() && (text[i] == '-' || text[i] == '+'))
        i++;
    bool digits = false, dot = false;
    for (; i < text.size(); i++) {
        char c = text[i];
        if (c >= '0' && c <= '9')
            digits = true;
        else if (c == '.' && !dot)
            dot = true;
        else if ((c == 'e' || c == 'E') && digits && i + 1 < text.size())
            break;
        else
            return {};
    }
    if (i < text.size()) { /* an exponent */
        size_t j = i + 1;
        if (j < text.size() && (text[j] == '-' || text[j] == '+'))
            j++;
        if (j == text.size())
            return {};
        for (; j < text.size(); j++)
            if (text[j] < '0' || text[j] > '9')
                return {};
    }
    return digits ? text : std::string_view();
}

/*
 * A number literal the server keeps unevaluated because it is coerced to the column's
 * type (numeric(10,2) DEFAULT 1.5, double precision DEFAULT 2.5, bigint DEFAULT 42), as
 * Debezium reads it from the text: in the column's representation, a decimal at the
 * column's scale. Empty when the text is no such number or does not fit.
 */
std::string number_default(std::string_view number, const ColumnRepr &repr, ValueWriter &writer)
{
    std::string out;
    ws_value value{};
    /* from_chars reads no '+' */
    const std::string_view unsigned_text = number.front() == '+' ? number.substr(1) : number;
    switch (repr.repr) {
    case JsonRepr::Int16:
    case JsonRepr::Int32:
    case JsonRepr::Int64: {
        int64_t v = 0;
        if (!pgval::read_number(unsigned_text, v))
            return {};
        json::append_int(out, v);
        return out;
    }
    case JsonRepr::Float32:
    case JsonRepr::Float64: {
        double v = 0;
        if (!pgval::read_number(unsigned_text, v))
            return {};
        if (repr.repr == JsonRepr::Float32)
            json::append_float(out, static_cast<float>(v));
        else
            json::append_double(out, v);
        return out;
    }
    case JsonRepr::NumericString: {
        /* the digits at the column's scale, as the server stores the value */
        std::string text(unsigned_text);
        if (text.find_first_of("eE") != std::string::npos)
            return {};
        size_t dot = text.find('.');
        size_t have = dot == std::string::npos ? 0 : text.size() - dot - 1;
        if (repr.scale > 0 && have < static_cast<size_t>(repr.scale)) {
            if (dot == std::string::npos)
                text += '.';
            text.append(static_cast<size_t>(repr.scale) - have, '0');
        } else if (repr.scale > 0 && have > static_cast<size_t>(repr.scale)) {
            return {}; /* would round: rather no default than a guess */
        }
        json::append_string(out, text);
        return out;
    }
    case JsonRepr::NumericDouble:
    case JsonRepr::NumericDecimal:
        value.kind = WS_VALUE_NUMERIC;
        value.data = number.data();
        value.len = number.size();
        return written_default(writer, repr, value);
    default:
        return {};
    }
}

} // namespace

std::string column_default_json(const TableColumn &column, const ColumnRepr &repr,
                                ValueWriter &writer)
{
    if (!column.has_default || repr.is_array || column.base_type_oid != 0)
        return {};
    if (column.enum_labels.empty() && !has_default_converter(column.type_oid))
        return {};
    std::string_view text = column.default_expr;
    while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front())))
        text.remove_prefix(1);
    while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back())))
        text.remove_suffix(1);
    if (text.empty() || iequals_prefix(text, "null"))
        return {};
    if (is_function_default(text))
        return placeholder(repr);
    const ws_value value = column.default_value();
    if (value.kind == WS_VALUE_NULL) {
        std::string_view number = bare_number(text);
        return number.empty() ? std::string() : number_default(number, repr, writer);
    }
    if (!is_literal(text) || repr.repr == JsonRepr::NumericVariable)
        return {}; /* an expression, or a default Debezium cannot write (a struct) */
    return written_default(writer, repr, value);
}

} // namespace debezium
} // namespace walship
