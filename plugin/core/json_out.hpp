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

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace walship::json
{

/*
 * A JSON string literal, quotes included. Invalid UTF-8 becomes U+FFFD (one per bad
 * byte) so that the event is always valid JSON, whatever the input bytes were.
 */
void append_string(std::string &out, const char *data, size_t len);
inline void append_string(std::string &out, std::string_view s)
{
    append_string(out, s.data(), s.size());
}

void append_int(std::string &out, int64_t value);
void append_uint(std::string &out, uint64_t value);

/* Java's Double.toString / Float.toString of the shortest round-trip digits. */
void append_double(std::string &out, double value);
void append_float(std::string &out, float value);

/* A JSON string holding standard base64 (with padding) of the bytes. */
void append_base64(std::string &out, const void *data, size_t len);

/* Literal text that needs no escaping (keys, schema fragments). */
inline void append_raw(std::string &out, std::string_view s)
{
    out.append(s.data(), s.size());
}

} // namespace walship::json

#endif
