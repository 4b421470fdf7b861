/*
 * json_out.cpp: JSON string escaping, number formatting and base64 for the Debezium
 * encoder (see json_out.hpp for the contract).
 */
#include "core_error.hpp"
#include "json_out.hpp"

#include <array>
#include <charconv>
#include <cmath>
#include <cstring>
#include <system_error>

namespace walship::json
{

namespace
{

/* 1 for bytes that end a run of bytes that can be copied verbatim. */
constexpr std::array<uint8_t, 256> make_special_table()
{
    std::array<uint8_t, 256> table{};
    for (int c = 0; c < 256; c++)
        table[c] = (c < 0x20 || c == '"' || c == '\\' || c >= 0x80) ? 1 : 0;
    return table;
}
constexpr std::array<uint8_t, 256> kSpecial = make_special_table();

constexpr char kHexUpper[] = "0123456789ABCDEF";

/* Length of the valid UTF-8 sequence at p (RFC 3629: no overlongs, no surrogates), or 0. */
size_t utf8_sequence_length(const unsigned char *p, const unsigned char *end)
{
    unsigned char c = *p;
    size_t need;
    unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) {
        need = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else {
        return 0;
    }
    if (static_cast<size_t>(end - p) < need)
        return 0;
    if (p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < need; i++)
        if (p[i] < 0x80 || p[i] > 0xBF)
            return 0;
    return need;
}

/*
 * Java's Double.toString layout applied to the shortest round-trip digits:
 * plain notation with at least one fractional digit for 1e-3 <= |v| < 1e7,
 * otherwise d.dddE[-]n.
 */
template <typename Out> void append_java_layout(Out &out, const char *sci, size_t sci_len)
{
    /* sci is std::to_chars scientific output: [-]d[.ddd]e(+|-)dd */
    size_t i = 0;
    if (sci[0] == '-') {
        out += '-';
        i = 1;
    }
    char digits[32];
    size_t ndigits = 0;
    for (; i < sci_len && sci[i] != 'e'; i++)
        if (sci[i] != '.')
            digits[ndigits++] = sci[i];
    int exponent = 0;
    std::from_chars(sci + i + 1 + (sci[i + 1] == '+' ? 1 : 0), sci + sci_len, exponent);

    if (exponent >= -3 && exponent < 7) {
        if (exponent >= 0) {
            size_t int_digits = static_cast<size_t>(exponent) + 1;
            for (size_t d = 0; d < int_digits; d++)
                out += d < ndigits ? digits[d] : '0';
            out += '.';
            if (ndigits > int_digits)
                out.append(digits + int_digits, ndigits - int_digits);
            else
                out += '0';
        } else {
            out += "0.";
            out.append(static_cast<size_t>(-exponent - 1), '0');
            out.append(digits, ndigits);
        }
        return;
    }
    out += digits[0];
    out += '.';
    if (ndigits > 1)
        out.append(digits + 1, ndigits - 1);
    else
        out += '0';
    out += 'E';
    char exp_buf[8];
    auto res = std::to_chars(exp_buf, exp_buf + sizeof(exp_buf), exponent);
    out.append(exp_buf, static_cast<size_t>(res.ptr - exp_buf));
}

template <typename Out, typename Float> void append_floating(Out &out, Float value)
{
    if (std::isnan(value)) {
        out += "\"NaN\"";
        return;
    }
    if (std::isinf(value)) {
        out += value > 0 ? "\"Infinity\"" : "\"-Infinity\"";
        return;
    }
    if (value == 0) {
        out += std::signbit(value) ? "-0.0" : "0.0";
        return;
    }
    char buf[64];
    auto res = std::to_chars(buf, buf + sizeof(buf), value, std::chars_format::scientific);
    append_java_layout(out, buf, static_cast<size_t>(res.ptr - buf));
}

} // namespace

template <typename Out> void append_string(Out &out, const char *data, size_t len)
{
    const auto *p = reinterpret_cast<const unsigned char *>(data);
    const unsigned char *end = p + len;
    out += '"';
    while (p < end) {
        const unsigned char *run = p;
        while (p < end && kSpecial[*p] == 0)
            p++;
        if (p > run)
            out.append(reinterpret_cast<const char *>(run), static_cast<size_t>(p - run));
        if (p >= end)
            break;
        unsigned char c = *p;
        if (c >= 0x80) {
            size_t n = utf8_sequence_length(p, end);
            if (n == 0) {
                out += "\xEF\xBF\xBD"; /* U+FFFD REPLACEMENT CHARACTER */
                p++;
            } else {
                out.append(reinterpret_cast<const char *>(p), n);
                p += n;
            }
            continue;
        }
        p++;
        switch (c) {
        case '"':
            out += "\\\"";
            break;
        case '\\':
            out += "\\\\";
            break;
        case '\n':
            out += "\\n";
            break;
        case '\r':
            out += "\\r";
            break;
        case '\t':
            out += "\\t";
            break;
        case '\b':
            out += "\\b";
            break;
        case '\f':
            out += "\\f";
            break;
        default: {
            char esc[6] = {'\\', 'u', '0', '0', kHexUpper[c >> 4], kHexUpper[c & 0xF]};
            out.append(esc, sizeof(esc));
        }
        }
    }
    out += '"';
}

template <typename Out> void append_double(Out &out, double value)
{
    append_floating(out, value);
}

template <typename Out> void append_float(Out &out, float value)
{
    append_floating(out, value);
}

template <typename Out> void append_base64(Out &out, const void *data, size_t len)
{
    static constexpr char kAlphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const auto *in = static_cast<const unsigned char *>(data);
    size_t start = out.size();
    size_t encoded = (len + 2) / 3 * 4;
    out.resize(start + encoded + 2);
    char *o = &out[start];
    *o++ = '"';
    size_t i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t{in[i]} << 16) | (uint32_t{in[i + 1]} << 8) | in[i + 2];
        o[0] = kAlphabet[v >> 18];
        o[1] = kAlphabet[(v >> 12) & 0x3F];
        o[2] = kAlphabet[(v >> 6) & 0x3F];
        o[3] = kAlphabet[v & 0x3F];
        o += 4;
    }
    if (i < len) {
        uint32_t v = uint32_t{in[i]} << 16;
        if (i + 1 < len)
            v |= uint32_t{in[i + 1]} << 8;
        o[0] = kAlphabet[v >> 18];
        o[1] = kAlphabet[(v >> 12) & 0x3F];
        o[2] = i + 1 < len ? kAlphabet[(v >> 6) & 0x3F] : '=';
        o[3] = '=';
        o += 4;
    }
    *o = '"';
}

#define WALSHIP_JSON_OUT_FOR(Out)                                                                  \
    template void append_string<Out>(Out &, const char *, size_t);                                 \
    template void append_double<Out>(Out &, double);                                               \
    template void append_float<Out>(Out &, float);                                                 \
    template void append_base64<Out>(Out &, const void *, size_t);
WALSHIP_JSON_OUT_FOR(std::string)
WALSHIP_JSON_OUT_FOR(OutBuf)
#undef WALSHIP_JSON_OUT_FOR

} // namespace walship::json
