/*
 * pg_values.cpp: calendar, duration, decimal and array-text arithmetic for the
 * encoders (see pg_values.hpp).
 */
#include "core_error.hpp"
#include "pg_values.hpp"

#include <charconv>
#include <cmath>
#include <limits>

namespace walship::pgval
{

namespace
{

template <typename Out> void append_padded(Out &out, int64_t value, int width)
{
    char buf[24];
    auto res = std::to_chars(buf, buf + sizeof(buf), value);
    int len = static_cast<int>(res.ptr - buf);
    for (int i = len; i < width; i++)
        out += '0';
    out.append(buf, static_cast<size_t>(len));
}

/* The fraction of a second in micros as ".ddd": see append_time_of_day. */
template <typename Out> void append_fraction(Out &out, int64_t micros, int fraction_digits)
{
    char digits[6];
    int64_t v = micros;
    for (int i = 5; i >= 0; i--) {
        digits[i] = static_cast<char>('0' + v % 10);
        v /= 10;
    }
    int width = fraction_digits;
    if (width < 0) {
        width = 6;
        while (width > 0 && digits[width - 1] == '0')
            width--;
        if (width == 0)
            return;
    }
    if (width == 0)
        return;
    if (width > 6)
        width = 6;
    out += '.';
    out.append(digits, static_cast<size_t>(width));
}

bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

} // namespace

CivilDate civil_from_days(int64_t days_since_epoch)
{
    /* Howard Hinnant's days_from_civil inverse, valid for the whole proleptic calendar. */
    int64_t z = days_since_epoch + 719468;
    int64_t era = floor_div(z, 146097);
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int64_t day = doy - (153 * mp + 2) / 5 + 1;
    int64_t month = mp < 10 ? mp + 3 : mp - 9;
    int64_t year = yoe + era * 400 + (month <= 2 ? 1 : 0);
    return CivilDate{year, static_cast<unsigned>(month), static_cast<unsigned>(day)};
}

int64_t days_from_civil(int64_t year, unsigned month, unsigned day)
{
    /* Howard Hinnant's days_from_civil */
    int64_t y = static_cast<int64_t>(year) - (month <= 2 ? 1 : 0);
    int64_t era = floor_div(y, 400);
    int64_t yoe = y - era * 400;
    int64_t mp = month > 2 ? month - 3 : month + 9;
    int64_t doy = (153 * mp + 2) / 5 + day - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

bool parse_iso_date(std::string_view text, int64_t &days)
{
    bool bc = false;
    if (text.size() > 3 && text.substr(text.size() - 3) == " BC") {
        bc = true;
        text.remove_suffix(3);
    }
    size_t dash = text.find('-');
    if (dash == std::string_view::npos || dash < 4 || text.size() != dash + 6 ||
        text[dash + 3] != '-')
        return false;
    int64_t year = 0;
    unsigned month = 0, day = 0;
    auto digits = [](std::string_view part, auto &value) {
        if (part.empty())
            return false;
        for (char c : part)
            if (c < '0' || c > '9')
                return false;
        auto res = std::from_chars(part.data(), part.data() + part.size(), value);
        return res.ec == std::errc();
    };
    if (!digits(text.substr(0, dash), year) || !digits(text.substr(dash + 1, 2), month) ||
        !digits(text.substr(dash + 4, 2), day) || month < 1 || month > 12 || day < 1 || day > 31)
        return false;
    if (bc)
        year = 1 - year; /* 1 BC is year 0 */
    days = days_from_civil(year, month, day);
    return true;
}

template <typename Out> void append_iso_date(Out &out, int64_t days_since_epoch)
{
    CivilDate date = civil_from_days(days_since_epoch);
    if (date.year > 9999) {
        out += '+';
        append_padded(out, date.year, 4);
    } else if (date.year < 0) {
        out += '-';
        append_padded(out, -date.year, 4);
    } else {
        append_padded(out, date.year, 4);
    }
    out += '-';
    append_padded(out, date.month, 2);
    out += '-';
    append_padded(out, date.day, 2);
}

template <typename Out>
void append_time_of_day(Out &out, int64_t micros_of_day, int fraction_digits)
{
    int64_t seconds = micros_of_day / kMicrosPerSecond;
    append_padded(out, seconds / 3600, 2);
    out += ':';
    append_padded(out, seconds / 60 % 60, 2);
    out += ':';
    append_padded(out, seconds % 60, 2);
    append_fraction(out, micros_of_day % kMicrosPerSecond, fraction_digits);
}

template <typename Out>
void append_zoned_timestamp(Out &out, int64_t micros_since_epoch, int fraction_digits)
{
    append_iso_date(out, floor_div(micros_since_epoch, kMicrosPerDay));
    out += 'T';
    append_time_of_day(out, floor_mod(micros_since_epoch, kMicrosPerDay), fraction_digits);
    out += 'Z';
}

template <typename Out> void append_zoned_time(Out &out, int64_t local_time_us, int32_t zone_s)
{
    int64_t utc = floor_mod(local_time_us + int64_t{zone_s} * kMicrosPerSecond, kMicrosPerDay);
    append_time_of_day(out, utc, -1);
    out += 'Z';
}

int64_t interval_micro_duration(int32_t months, int32_t days, int64_t time_us)
{
    /*
     * Debezium parses PostgreSQL's interval text into years, months, days, hours,
     * minutes and (double) seconds, then evaluates MicroDuration.durationMicros in
     * doubles. The same operations in the same order give the same number, rounding
     * included. The text splits the time part with truncating division, so do we.
     */
    const double days_per_month = 365.25 / 12.0;
    int64_t hours = time_us / (3600 * kMicrosPerSecond);
    int64_t rest = time_us % (3600 * kMicrosPerSecond);
    int64_t minutes = rest / (60 * kMicrosPerSecond);
    int64_t second_us = rest % (60 * kMicrosPerSecond);
    double seconds = static_cast<double>(second_us) / 1e6;
    double number_of_days = static_cast<double>(months) * days_per_month + days;
    double number_of_seconds =
        (((number_of_days * 24 + static_cast<double>(hours)) * 60) + static_cast<double>(minutes)) *
            60 +
        seconds;
    double micros = number_of_seconds * 1e6;
    /* Java's (long) cast: truncation, saturating, NaN to 0 */
    if (std::isnan(micros))
        return 0;
    if (micros >= 9223372036854775807.0)
        return std::numeric_limits<int64_t>::max();
    if (micros <= -9223372036854775808.0)
        return std::numeric_limits<int64_t>::min();
    return static_cast<int64_t>(micros);
}

template <typename Out>
void append_iso_interval(Out &out, int32_t months, int32_t days, int64_t time_us)
{
    int64_t hours = time_us / (3600 * kMicrosPerSecond);
    int64_t rest = time_us % (3600 * kMicrosPerSecond);
    int64_t minutes = rest / (60 * kMicrosPerSecond);
    int64_t second_us = rest % (60 * kMicrosPerSecond);
    out += 'P';
    append_padded(out, months / 12, 0);
    out += 'Y';
    append_padded(out, months % 12, 0);
    out += 'M';
    append_padded(out, days, 0);
    out += "DT";
    append_padded(out, hours, 0);
    out += 'H';
    append_padded(out, minutes, 0);
    out += 'M';
    if (second_us < 0) {
        out += '-';
        second_us = -second_us;
    }
    append_padded(out, second_us / kMicrosPerSecond, 0);
    append_fraction(out, second_us % kMicrosPerSecond, -1);
    out += 'S';
}

bool parse_decimal(std::string_view text, Decimal &out)
{
    out.negative = false;
    out.digits.clear();
    out.scale = 0;
    size_t i = 0;
    if (i < text.size() && (text[i] == '-' || text[i] == '+')) {
        out.negative = text[i] == '-';
        i++;
    }
    bool seen_point = false;
    for (; i < text.size(); i++) {
        char c = text[i];
        if (c >= '0' && c <= '9') {
            out.digits += c;
            if (seen_point)
                out.scale++;
        } else if (c == '.' && !seen_point) {
            seen_point = true;
        } else {
            return false;
        }
    }
    return !out.digits.empty();
}

void rescale_decimal(Decimal &d, int32_t scale)
{
    if (scale >= d.scale) {
        d.digits.append(static_cast<size_t>(scale - d.scale), '0');
        d.scale = scale;
        return;
    }
    size_t drop = static_cast<size_t>(d.scale - scale);
    if (d.digits.size() <= drop)
        d.digits.insert(0, drop + 1 - d.digits.size(), '0');
    bool round_up = d.digits[d.digits.size() - drop] >= '5';
    d.digits.resize(d.digits.size() - drop);
    d.scale = scale;
    if (!round_up)
        return;
    size_t i = d.digits.size();
    while (i > 0) {
        i--;
        if (d.digits[i] == '9') {
            d.digits[i] = '0';
        } else {
            d.digits[i]++;
            return;
        }
    }
    d.digits.insert(d.digits.begin(), '1');
}

void strip_trailing_zeros(Decimal &d)
{
    while (d.scale > 0 && !d.digits.empty() && d.digits.back() == '0') {
        d.digits.pop_back();
        d.scale--;
    }
    if (d.digits.empty())
        d.digits = "0";
}

void unscaled_twos_complement(const Decimal &d, std::string &out)
{
    out.clear();
    size_t first = d.digits.find_first_not_of('0');
    if (first == std::string::npos) {
        out.push_back('\0');
        return;
    }
    std::string_view digits(d.digits);
    digits.remove_prefix(first);

    /* magnitude in base 2^32 limbs, least significant first: limbs = limbs*10^k + chunk */
    thread_local std::vector<uint32_t> limbs;
    limbs.clear();
    size_t pos = 0;
    size_t chunk = digits.size() % 9 == 0 ? 9 : digits.size() % 9;
    while (pos < digits.size()) {
        uint32_t value = 0, scale = 1;
        for (size_t i = 0; i < chunk; i++) {
            value = value * 10 + static_cast<uint32_t>(digits[pos + i] - '0');
            scale *= 10;
        }
        pos += chunk;
        chunk = 9;
        uint64_t carry = value;
        for (uint32_t &limb : limbs) {
            uint64_t t = uint64_t{limb} * scale + carry;
            limb = static_cast<uint32_t>(t);
            carry = t >> 32;
        }
        if (carry != 0)
            limbs.push_back(static_cast<uint32_t>(carry));
    }

    /* big-endian bytes, minimal */
    for (size_t i = limbs.size(); i > 0; i--) {
        uint32_t limb = limbs[i - 1];
        for (int shift = 24; shift >= 0; shift -= 8)
            out.push_back(static_cast<char>((limb >> shift) & 0xFF));
    }
    size_t lead = 0;
    while (lead + 1 < out.size() && out[lead] == '\0')
        lead++;
    out.erase(0, lead);

    auto byte = [&](size_t i) { return static_cast<unsigned char>(out[i]); };
    if (byte(0) & 0x80) {
        /* -2^(8n-1) fits in n bytes; any other magnitude with the top bit set needs n+1 */
        bool minimum_negative = d.negative && byte(0) == 0x80;
        for (size_t i = 1; minimum_negative && i < out.size(); i++)
            minimum_negative = byte(i) == 0;
        if (!minimum_negative)
            out.insert(out.begin(), '\0');
    }
    if (d.negative) {
        for (char &c : out)
            c = static_cast<char>(~static_cast<unsigned char>(c));
        for (size_t i = out.size(); i > 0; i--) {
            unsigned char b = static_cast<unsigned char>(out[i - 1]);
            out[i - 1] = static_cast<char>(b + 1);
            if (b != 0xFF)
                break;
        }
    }
}

SpecialNumeric special_numeric(std::string_view text)
{
    if (text == "NaN")
        return SpecialNumeric::NaN;
    if (text == "Infinity")
        return SpecialNumeric::PosInfinity;
    if (text == "-Infinity")
        return SpecialNumeric::NegInfinity;
    return SpecialNumeric::None;
}

bool parse_array_text(std::string_view text, char delimiter, std::vector<ArrayElement> &elements,
                      std::string &storage)
{
    elements.clear();
    storage.clear();
    size_t i = 0, n = text.size();
    auto skip_spaces = [&]() {
        while (i < n && is_space(text[i]))
            i++;
    };
    skip_spaces();
    if (i < n && text[i] == '[') { /* explicit bounds: [lower:upper]={...} */
        size_t eq = text.find('=', i);
        if (eq == std::string_view::npos || text.find(']', i) > eq)
            return false;
        if (text.find('[', i + 1) < eq) /* more than one dimension */
            return false;
        i = eq + 1;
        skip_spaces();
    }
    if (i >= n || text[i] != '{')
        return false;
    i++;
    skip_spaces();
    if (i < n && text[i] == '}') {
        i++;
        skip_spaces();
        return i == n;
    }
    for (;;) {
        skip_spaces();
        if (i >= n || text[i] == '{')
            return false; /* truncated, or a nested (multi-dimensional) array */
        ArrayElement element{false, storage.size(), 0};
        if (text[i] == '"') {
            i++;
            for (;;) {
                if (i >= n)
                    return false;
                char c = text[i++];
                if (c == '"')
                    break;
                if (c == '\\') {
                    if (i >= n)
                        return false;
                    c = text[i++];
                }
                storage += c;
            }
            skip_spaces();
        } else {
            bool escaped = false;
            size_t last_significant = storage.size();
            while (i < n && text[i] != delimiter && text[i] != '}') {
                char c = text[i++];
                if (c == '"' || c == '{')
                    return false;
                if (c == '\\') {
                    if (i >= n)
                        return false;
                    c = text[i++];
                    escaped = true;
                    storage += c;
                    last_significant = storage.size();
                    continue;
                }
                storage += c;
                if (!is_space(c))
                    last_significant = storage.size();
            }
            storage.resize(last_significant); /* array_in ignores trailing spaces */
            std::string_view raw(storage.data() + element.offset, storage.size() - element.offset);
            if (raw.empty())
                return false;
            if (!escaped && raw.size() == 4 && (raw[0] == 'N' || raw[0] == 'n') &&
                (raw[1] == 'U' || raw[1] == 'u') && (raw[2] == 'L' || raw[2] == 'l') &&
                (raw[3] == 'L' || raw[3] == 'l')) {
                element.is_null = true;
                storage.resize(element.offset);
            }
        }
        element.len = storage.size() - element.offset;
        elements.push_back(element);
        if (i >= n)
            return false;
        if (text[i] == delimiter) {
            i++;
            continue;
        }
        /* '}' */
        i++;
        skip_spaces();
        return i == n;
    }
}

bool decode_bytea_hex(std::string_view text, std::string &out)
{
    out.clear();
    if (text.size() < 2 || text[0] != '\\' || text[1] != 'x' || text.size() % 2 != 0)
        return false;
    out.reserve((text.size() - 2) / 2);
    for (size_t i = 2; i < text.size(); i += 2) {
        int hi = hex_value(text[i]), lo = hex_value(text[i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        out.push_back(static_cast<char>(hi << 4 | lo));
    }
    return true;
}

#define WALSHIP_PGVAL_OUT_FOR(Out)                                                                 \
    template void append_iso_date<Out>(Out &, int64_t);                                            \
    template void append_time_of_day<Out>(Out &, int64_t, int);                                    \
    template void append_zoned_timestamp<Out>(Out &, int64_t, int);                                \
    template void append_zoned_time<Out>(Out &, int64_t, int32_t);                                 \
    template void append_iso_interval<Out>(Out &, int32_t, int32_t, int64_t);
WALSHIP_PGVAL_OUT_FOR(std::string)
WALSHIP_PGVAL_OUT_FOR(OutBuf)
#undef WALSHIP_PGVAL_OUT_FOR

} // namespace walship::pgval
