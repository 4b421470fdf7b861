/*
 * test_core_values.cpp: the value arithmetic under the Debezium encoder: JSON
 * escaping and number formatting, base64, calendar and ISO-8601 renderings,
 * MicroDuration, decimal to Kafka Connect Decimal bytes, array text parsing.
 */
#include "core_test_support.hpp"

#include "json_out.hpp"
#include "pg_values.hpp"

#include <cstdint>
#include <cmath>
#include <limits>

using namespace walship;
using namespace walship_test;

namespace
{

std::string json_string(const std::string &s)
{
    std::string out;
    json::append_string(out, s);
    return out;
}

std::string java_double(double d)
{
    std::string out;
    json::append_double(out, d);
    return out;
}

std::string java_float(float f)
{
    std::string out;
    json::append_float(out, f);
    return out;
}

std::string base64(const std::string &s)
{
    std::string out;
    json::append_base64(out, s.data(), s.size());
    return out;
}

std::string hex(const std::string &bytes)
{
    static const char digits[] = "0123456789abcdef";
    std::string out;
    for (unsigned char c : bytes) {
        out += digits[c >> 4];
        out += digits[c & 0xF];
    }
    return out;
}

std::string twos_complement(const std::string &decimal_text)
{
    pgval::Decimal d;
    EXPECT_TRUE(pgval::parse_decimal(decimal_text, d)) << decimal_text;
    std::string out;
    pgval::unscaled_twos_complement(d, out);
    return hex(out);
}

std::string zoned_timestamp(int64_t us, int digits)
{
    std::string out;
    pgval::append_zoned_timestamp(out, us, digits);
    return out;
}

std::string iso_interval(int32_t months, int32_t days, int64_t time_us)
{
    std::string out;
    pgval::append_iso_interval(out, months, days, time_us);
    return out;
}

} // namespace

TEST(CoreJsonOut, EscapesQuotesBackslashesAndControlCharacters)
{
    EXPECT_EQ(json_string("plain"), "\"plain\"");
    EXPECT_EQ(json_string("a\"b\\c/d"), "\"a\\\"b\\\\c/d\"");
    EXPECT_EQ(json_string("\n\r\t\b\f"), "\"\\n\\r\\t\\b\\f\"");
    EXPECT_EQ(json_string(std::string("\x01\x1f\x7f", 3)), "\"\\u0001\\u001F\x7f\"");
    EXPECT_EQ(json_string(std::string("nul\0byte", 8)), "\"nul\\u0000byte\"");
}

TEST(CoreJsonOut, KeepsValidUtf8AndReplacesInvalidBytes)
{
    EXPECT_EQ(json_string("h\xC3\xA9llo \xE2\x82\xAC \xF0\x9F\x98\x80"),
              "\"h\xC3\xA9llo \xE2\x82\xAC \xF0\x9F\x98\x80\"");
    /* a lone continuation byte, a truncated sequence, an overlong '/', a surrogate */
    std::string bad = "a\x80"
                      "b\xE2\x82"
                      "c\xC0\xAF"
                      "d\xED\xA0\x80";
    std::string out = json_string(bad);
    EXPECT_TRUE(valid_utf8(out)) << out;
    Json parsed = parse_json(out);
    EXPECT_EQ(parsed.str(), "a\xEF\xBF\xBD"
                            "b\xEF\xBF\xBD\xEF\xBF\xBD"
                            "c\xEF\xBF\xBD\xEF\xBF\xBD"
                            "d\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
}

TEST(CoreJsonOut, DoublesLookLikeJavaDoubleToString)
{
    EXPECT_EQ(java_double(1.0), "1.0");
    EXPECT_EQ(java_double(100.0), "100.0");
    EXPECT_EQ(java_double(-2.5), "-2.5");
    EXPECT_EQ(java_double(0.1), "0.1");
    EXPECT_EQ(java_double(0.001), "0.001");
    EXPECT_EQ(java_double(0.0001), "1.0E-4");
    EXPECT_EQ(java_double(1234567.0), "1234567.0");
    EXPECT_EQ(java_double(12345678.0), "1.2345678E7");
    EXPECT_EQ(java_double(1e21), "1.0E21");
    EXPECT_EQ(java_double(0.0), "0.0");
    EXPECT_EQ(java_double(-0.0), "-0.0");
    EXPECT_EQ(java_double(std::numeric_limits<double>::max()), "1.7976931348623157E308");
    EXPECT_EQ(java_double(std::nan("")), "\"NaN\"");
    EXPECT_EQ(java_double(HUGE_VAL), "\"Infinity\"");
    EXPECT_EQ(java_double(-HUGE_VAL), "\"-Infinity\"");
    /* float4 values print with float's shortest digits, not the widened double's */
    EXPECT_EQ(java_float(3.14f), "3.14");
    EXPECT_EQ(java_float(1e10f), "1.0E10");
    for (double d : {3.14159, 1e-300, 123456.789, 5e-324, 9007199254740993.0})
        EXPECT_EQ(std::strtod(java_double(d).c_str(), nullptr), d) << java_double(d);
}

TEST(CoreJsonOut, Base64MatchesRfc4648)
{
    EXPECT_EQ(base64(""), "\"\"");
    EXPECT_EQ(base64("f"), "\"Zg==\"");
    EXPECT_EQ(base64("fo"), "\"Zm8=\"");
    EXPECT_EQ(base64("foo"), "\"Zm9v\"");
    EXPECT_EQ(base64("foob"), "\"Zm9vYg==\"");
    EXPECT_EQ(base64("fooba"), "\"Zm9vYmE=\"");
    EXPECT_EQ(base64("foobar"), "\"Zm9vYmFy\"");
    EXPECT_EQ(base64(std::string("\xff\xfe\x00", 3)), "\"//4A\"");
}

TEST(CoreValues, CalendarCoversBcAndFarFutureDates)
{
    auto date = [](int64_t days) {
        std::string out;
        pgval::append_iso_date(out, days);
        return out;
    };
    EXPECT_EQ(date(0), "1970-01-01");
    EXPECT_EQ(date(-1), "1969-12-31");
    EXPECT_EQ(date(19723), "2024-01-01");
    EXPECT_EQ(date(11016), "2000-02-29");
    /* 0001-01-01 AD, and the day before it: 1 BC is astronomical year 0 */
    EXPECT_EQ(date(-719162), "0001-01-01");
    EXPECT_EQ(date(-719163), "0000-12-31");
    /* 4714-11-24 BC, PostgreSQL's first date (Julian day 0) */
    EXPECT_EQ(date(-2440588), "-4713-11-24");
    EXPECT_EQ(date(2932897), "+10000-01-01");
}

TEST(CoreValues, ZonedTimestampsAreUtcIsoStrings)
{
    const int64_t t = 1704164645123456; /* 2024-01-02 03:04:05.123456 UTC */
    EXPECT_EQ(zoned_timestamp(t, 6), "2024-01-02T03:04:05.123456Z");
    EXPECT_EQ(zoned_timestamp(t - 456, 3), "2024-01-02T03:04:05.123Z");
    EXPECT_EQ(zoned_timestamp(t - 123456, 6), "2024-01-02T03:04:05.000000Z");
    EXPECT_EQ(zoned_timestamp(t - 123456, -1), "2024-01-02T03:04:05Z");
    EXPECT_EQ(zoned_timestamp(t - 3456, -1), "2024-01-02T03:04:05.12Z");
    EXPECT_EQ(zoned_timestamp(-1, 6), "1969-12-31T23:59:59.999999Z");
    /* 44 BC, March 15th, noon: year -43 in ISO-8601's astronomical numbering */
    EXPECT_EQ(zoned_timestamp(-63517780800000000, 6), "-0043-03-15T12:00:00.000000Z");
}

TEST(CoreValues, ZonedTimeConvertsPostgresZoneToUtc)
{
    auto zoned = [](int64_t us, int32_t zone) {
        std::string out;
        pgval::append_zoned_time(out, us, zone);
        return out;
    };
    const int64_t h = 3600000000;
    /* 13:51:30+02 is stored with zone -7200 (seconds west of UTC) */
    EXPECT_EQ(zoned(13 * h + 51 * 60000000LL + 30000000, -7200), "11:51:30Z");
    EXPECT_EQ(zoned(1 * h + 123789, -2 * 3600), "23:00:00.123789Z");
    EXPECT_EQ(zoned(23 * h + 500000, 5 * 3600), "04:00:00.5Z");
}

TEST(CoreValues, MicroDurationMatchesDebezium)
{
    /* values Debezium's MicroDuration.durationMicros computes (Java doubles) */
    const int64_t h = 3600000000, m = 60000000;
    EXPECT_EQ(pgval::interval_micro_duration(14, 3, 4 * h + 5 * m + 6780000), 37091106780000);
    EXPECT_EQ(pgval::interval_micro_duration(-14, -3, -(4 * h + 5 * m + 6780000)), -37091106780000);
    EXPECT_EQ(pgval::interval_micro_duration(1, 0, 0), 2629800000000);
    EXPECT_EQ(pgval::interval_micro_duration(0, 0, 1), 1);
    EXPECT_EQ(pgval::interval_micro_duration(0, 1, -h), 82800000000);
}

TEST(CoreValues, IsoIntervalIsExact)
{
    const int64_t h = 3600000000, m = 60000000;
    EXPECT_EQ(iso_interval(14, 3, 4 * h + 5 * m + 6780000), "P1Y2M3DT4H5M6.78S");
    EXPECT_EQ(iso_interval(0, 0, 0), "P0Y0M0DT0H0M0S");
    EXPECT_EQ(iso_interval(-14, -3, -(4 * h + 5 * m + 6780000)), "P-1Y-2M-3DT-4H-5M-6.78S");
    EXPECT_EQ(iso_interval(0, 0, 1), "P0Y0M0DT0H0M0.000001S");
    EXPECT_EQ(iso_interval(0, 0, 100 * h), "P0Y0M0DT100H0M0S");
}

TEST(CoreValues, DecimalsBecomeMinimalTwosComplement)
{
    EXPECT_EQ(twos_complement("0"), "00");
    EXPECT_EQ(twos_complement("0.000"), "00");
    EXPECT_EQ(twos_complement("127"), "7f");
    EXPECT_EQ(twos_complement("128"), "0080");
    EXPECT_EQ(twos_complement("255"), "00ff");
    EXPECT_EQ(twos_complement("256"), "0100");
    EXPECT_EQ(twos_complement("-1"), "ff");
    EXPECT_EQ(twos_complement("-128"), "80");
    EXPECT_EQ(twos_complement("-129"), "ff7f");
    EXPECT_EQ(twos_complement("-256"), "ff00");
    EXPECT_EQ(twos_complement("123.45"), "3039");
    EXPECT_EQ(twos_complement("-123.45"), "cfc7");
    EXPECT_EQ(twos_complement("18446744073709551616"), "010000000000000000");
    EXPECT_EQ(twos_complement("-18446744073709551616"), "ff0000000000000000");
    EXPECT_EQ(twos_complement("10000000000000000000000000000000000000007"),
              "1d6329f1c35ca4bfabb9f5610000000007");
}

TEST(CoreValues, DecimalRescalingAndStripping)
{
    pgval::Decimal d;
    ASSERT_TRUE(pgval::parse_decimal("1.5", d));
    pgval::rescale_decimal(d, 3);
    EXPECT_EQ(d.digits, "1500");
    EXPECT_EQ(d.scale, 3);
    ASSERT_TRUE(pgval::parse_decimal("1.2349", d));
    pgval::rescale_decimal(d, 2);
    EXPECT_EQ(d.digits, "123");
    ASSERT_TRUE(pgval::parse_decimal("9.995", d));
    pgval::rescale_decimal(d, 2);
    EXPECT_EQ(d.digits, "1000");
    ASSERT_TRUE(pgval::parse_decimal("12300", d));
    pgval::rescale_decimal(d, -2); /* numeric(5,-2) */
    EXPECT_EQ(d.digits, "123");
    ASSERT_TRUE(pgval::parse_decimal("1.500", d));
    pgval::strip_trailing_zeros(d);
    EXPECT_EQ(d.digits, "15");
    EXPECT_EQ(d.scale, 1);
    ASSERT_TRUE(pgval::parse_decimal("1500", d));
    pgval::strip_trailing_zeros(d);
    EXPECT_EQ(d.digits, "1500");
    EXPECT_EQ(d.scale, 0);
    EXPECT_FALSE(pgval::parse_decimal("NaN", d));
    EXPECT_FALSE(pgval::parse_decimal("1e5", d));
    EXPECT_FALSE(pgval::parse_decimal("", d));
}

TEST(CoreValues, ArrayTextParsing)
{
    std::vector<pgval::ArrayElement> elements;
    std::string storage;
    auto items = [&](const std::string &text) {
        std::vector<std::string> out;
        if (!pgval::parse_array_text(text, ',', elements, storage))
            return std::vector<std::string>{"<unparsed>"};
        for (const auto &e : elements)
            out.push_back(e.is_null ? "<null>" : storage.substr(e.offset, e.len));
        return out;
    };
    using V = std::vector<std::string>;
    EXPECT_EQ(items("{}"), V{});
    EXPECT_EQ(items("{1,2,3}"), (V{"1", "2", "3"}));
    EXPECT_EQ(items("{1,NULL,null}"), (V{"1", "<null>", "<null>"}));
    EXPECT_EQ(items("{\"NULL\",\"a,b\",\"say \\\"hi\\\"\",\"back\\\\slash\",\"\"}"),
              (V{"NULL", "a,b", "say \"hi\"", "back\\slash", ""}));
    EXPECT_EQ(items("[0:1]={7,8}"), (V{"7", "8"}));
    EXPECT_EQ(items("{ 1 , 2 }"), (V{"1", "2"}));
    EXPECT_EQ(items("{{1,2},{3,4}}"), V{"<unparsed>"});
    EXPECT_EQ(items("[1:2][1:2]={{1,2},{3,4}}"), V{"<unparsed>"});
    EXPECT_EQ(items("{1,2"), V{"<unparsed>"});
    EXPECT_EQ(items("not an array"), V{"<unparsed>"});
    ASSERT_TRUE(pgval::parse_array_text("{(1,1),(0,0);(2,2),(1,1)}", ';', elements, storage));
    EXPECT_EQ(elements.size(), 2u);
}

TEST(CoreValues, ByteaHexOutput)
{
    std::string out;
    EXPECT_TRUE(pgval::decode_bytea_hex("\\x00ff10", out));
    EXPECT_EQ(out, std::string("\x00\xff\x10", 3));
    EXPECT_FALSE(pgval::decode_bytea_hex("\\000", out));
    EXPECT_FALSE(pgval::decode_bytea_hex("\\x0", out));
}

/* The JSON writers' buffer behaves as the std::string it replaced, for what they use. */
TEST(CoreValues, OutBufAppendsGrowsAndMoves)
{
    OutBuf out;
    EXPECT_TRUE(out.empty());
    out.append(nullptr, 0); /* an empty piece of a buffer that never grew */
    out += std::string_view();
    out.append(0, 'x');
    out.resize(0);
    EXPECT_EQ(out.size(), 0u);

    std::string expected;
    for (int i = 0; i < 1000; i++) { /* grows past its first allocation many times */
        out += "ab";
        out += 'c';
        json::append_int(out, -i);
        json::append_uint(out, static_cast<uint64_t>(i) * 1000003u);
        expected +=
            "abc" + std::to_string(-i) + std::to_string(static_cast<uint64_t>(i) * 1000003u);
    }
    json::append_int(out, INT64_MIN);
    json::append_uint(out, UINT64_MAX);
    expected += std::to_string(INT64_MIN) + std::to_string(UINT64_MAX);
    EXPECT_EQ(out.str(), expected);
    EXPECT_EQ(out.back(), expected.back());

    out.resize(3);
    EXPECT_EQ(out.view(), "abc");
    out.resize(5); /* grows with NUL bytes */
    EXPECT_EQ(out.str(), std::string("abc\0\0", 5));
    out.append(2, '-');
    EXPECT_EQ(out.str(), std::string("abc\0\0--", 7));

    OutBuf moved(std::move(out));
    EXPECT_EQ(moved.str(), std::string("abc\0\0--", 7));
    EXPECT_TRUE(out.empty());
    out += "again";
    EXPECT_EQ(out.view(), "again");

    moved.release_if_large(1); /* above the limit: the memory goes, the buffer is empty */
    EXPECT_EQ(moved.capacity(), 0u);
    moved += "x";
    EXPECT_EQ(moved.view(), "x");
}
