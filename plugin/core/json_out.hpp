/*
 * json_out.hpp: hand-written JSON appenders for the Debezium encoder's hot path.
 *
 * Everything appends to a caller-owned std::string that the encoder reuses across
 * events, so writing an event allocates nothing once the buffer has grown. Output is
 * what Kafka Connect's JsonConverter (Jackson) writes: compact, strings escaped the
 * way Jackson escapes them, doubles in Java's Double.toString form, byte arrays as
 * standard base64 with padding, NaN and infinities as the strings "NaN", "Infinity"
 * and "-Infinity".
 */
#ifndef WALSHIP_JSON_OUT_HPP
#define WALSHIP_JSON_OUT_HPP

#include "core_error.hpp"
#include "out_buf.hpp"

#include <cstddef>
#include <cstdint>
#include <charconv>
#include <string>
#include <string_view>
#include <type_traits>

namespace walship::json
{

/*
 * Every appender works on a std::string (schemas, notes) and on an OutBuf (the events
 * of the hot path); json_out.cpp instantiates both.
 */

/*
 * A JSON string literal, quotes included. Invalid UTF-8 becomes U+FFFD (one per bad
 * byte) so that the event is always valid JSON, whatever the input bytes were.
 */
template <typename Out> void append_string(Out &out, const char *data, size_t len);
template <typename Out> inline void append_string(Out &out, std::string_view s)
{
    append_string(out, s.data(), s.size());
}

/* An integer's decimal digits; into an OutBuf through its room, without a copy. */
template <typename Out, typename Int> inline void append_integer(Out &out, Int value)
{
    if constexpr (std::is_same_v<Out, OutBuf>) {
        char *p = out.room(20);
        out.advance_to(std::to_chars(p, p + 20, value).ptr);
    } else {
        char buf[24];
        auto res = std::to_chars(buf, buf + sizeof(buf), value);
        out.append(buf, static_cast<size_t>(res.ptr - buf));
    }
}
template <typename Out> inline void append_int(Out &out, int64_t value)
{
    append_integer(out, value);
}
template <typename Out> inline void append_uint(Out &out, uint64_t value)
{
    append_integer(out, value);
}

/* Java's Double.toString / Float.toString of the shortest round-trip digits. */
template <typename Out> void append_double(Out &out, double value);
template <typename Out> void append_float(Out &out, float value);

/* A JSON string holding standard base64 (with padding) of the bytes. */
template <typename Out> void append_base64(Out &out, const void *data, size_t len);

/* Literal text that needs no escaping (keys, schema fragments). */
template <typename Out> inline void append_raw(Out &out, std::string_view s)
{
    out.append(s.data(), s.size());
}

} // namespace walship::json

#endif
