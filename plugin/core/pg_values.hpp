/*
 * pg_values.hpp: PostgreSQL value arithmetic the encoders need, without PostgreSQL.
 *
 * Owns calendar conversion (days since the Unix epoch to a proleptic Gregorian date),
 * the ISO-8601 renderings Debezium uses for timestamptz, timetz and interval, the
 * interval-to-microseconds rule of Debezium's MicroDuration, decimal text to the
 * unscaled two's complement bytes of Kafka Connect's Decimal, and the parser for
 * PostgreSQL's array text form. Everything works on borrowed text and appends to
 * caller-owned buffers.
 */
#ifndef WALSHIP_PG_VALUES_HPP
#define WALSHIP_PG_VALUES_HPP

#include "core_error.hpp"
#include "out_buf.hpp"

#include <charconv>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace walship::pgval
{

constexpr int64_t kMicrosPerSecond = 1000000;
constexpr int64_t kMicrosPerDay = 86400 * kMicrosPerSecond;

/* floor division and its non-negative remainder */
inline int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}
inline int64_t floor_mod(int64_t a, int64_t b)
{
    return a - floor_div(a, b) * b;
}

/* The whole of text as one number of type T (std::from_chars's syntax: no '+', no spaces). */
template <typename T> bool read_number(std::string_view text, T &value)
{
    const char *last = text.data() + text.size();
    auto res = std::from_chars(text.data(), last, value);
    return res.ec == std::errc() && res.ptr == last;
}

struct CivilDate {
    int64_t year; /* astronomical: 0 is 1 BC, -1 is 2 BC (as java.time counts) */
    unsigned month;
    unsigned day;
};

CivilDate civil_from_days(int64_t days_since_epoch);
int64_t days_from_civil(int64_t year, unsigned month, unsigned day);

/* A date's ISO text as PostgreSQL writes it (YYYY-MM-DD, " BC" after a year before 1)
 * as days since 1970-01-01; false for anything else (infinity, other DateStyles). */
bool parse_iso_date(std::string_view text, int64_t &days);

/* The append_* functions write to a std::string or an OutBuf (both instantiated). */

/* yyyy-mm-dd the way java.time's ISO formatter writes years: 4+ digits, sign beyond. */
template <typename Out> void append_iso_date(Out &out, int64_t days_since_epoch);

/* HH:MM:SS then the fraction of micros: fixed width (1..6 digits) or, with
 * fraction_digits < 0, as few digits as needed and none for whole seconds. */
template <typename Out>
void append_time_of_day(Out &out, int64_t micros_of_day, int fraction_digits);

/* Debezium's ZonedTimestamp: 2024-01-02T03:04:05.123456Z (UTC). */
template <typename Out>
void append_zoned_timestamp(Out &out, int64_t micros_since_epoch, int fraction_digits);

/* Debezium's ZonedTime: the time converted to UTC, 03:04:05.5Z. zone_s is seconds
 * WEST of UTC, as PostgreSQL stores it. */
template <typename Out> void append_zoned_time(Out &out, int64_t local_time_us, int32_t zone_s);

/* Debezium's MicroDuration: months count 365.25/12 days, computed as Debezium does. */
int64_t interval_micro_duration(int32_t months, int32_t days, int64_t time_us);

/* ISO-8601 duration the way Debezium's Interval writes it: P1Y2M3DT4H5M6.78S. */
template <typename Out>
void append_iso_interval(Out &out, int32_t months, int32_t days, int64_t time_us);

/*
 * A finite decimal split into sign, digits and scale: "-12.340" is negative,
 * digits "12340", scale 3. Returns false for NaN, Infinity, -Infinity and anything
 * that is not decimal text.
 */
struct Decimal {
    bool negative = false;
    std::string digits; /* no sign, no point; may have leading zeros */
    int32_t scale = 0;
};
bool parse_decimal(std::string_view text, Decimal &out);

/* Rescale to exactly `scale` fractional digits (negative: multiples of 10^-scale),
 * rounding half away from zero when digits must go, as numeric's own rounding does. */
void rescale_decimal(Decimal &d, int32_t scale);

/* Drop trailing fractional zeros (never below scale 0), like BigDecimal's
 * stripTrailingZeros followed by setScale(0) for negative scales. */
void strip_trailing_zeros(Decimal &d);

/* The unscaled value as minimal big-endian two's complement (BigInteger.toByteArray). */
void unscaled_twos_complement(const Decimal &d, std::string &out);

/* "NaN", "Infinity", "-Infinity": PostgreSQL's special numeric spellings. */
enum class SpecialNumeric { None, NaN, PosInfinity, NegInfinity };
SpecialNumeric special_numeric(std::string_view text);

/*
 * PostgreSQL's array text form, one dimension: {1,2,NULL,"a \"q\""}, optionally
 * preceded by explicit bounds ([0:2]={...}). Elements are unescaped into storage;
 * returns false for multi-dimensional or malformed input.
 */
struct ArrayElement {
    bool is_null;
    size_t offset; /* into storage */
    size_t len;
};
bool parse_array_text(std::string_view text, char delimiter, std::vector<ArrayElement> &elements,
                      std::string &storage);

/* bytea's hex output (\x0a0b) to bytes; false if it is not hex output. */
bool decode_bytea_hex(std::string_view text, std::string &out);

} // namespace walship::pgval

#endif
