/*
 * encoder.hpp: the event encoder interface behind ws_encoder, and the output buffer
 * both encoders share.
 *
 * An encoder turns one ws_change into the bytes of one Kafka message value (the
 * event) or key. It owns its buffers and reuses them for every call, so the hot path
 * allocates nothing once they have grown to the largest event seen.
 */
#ifndef WALSHIP_ENCODER_HPP
#define WALSHIP_ENCODER_HPP

#include "core_error.hpp"
#include "options.hpp"
#include "walship_core.h"

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace walship
{

/*
 * Reused buffers keep their capacity, which is what makes the hot path free of
 * allocations, but one huge row (a 100 MB document) must not pin that much memory
 * in a long-running stream worker for good: above this size a buffer is released
 * before its next use.
 */
constexpr size_t kRetainedBufferLimit = size_t{8} << 20;

inline void release_if_large(std::string &buffer)
{
    if (buffer.capacity() > kRetainedBufferLimit)
        std::string().swap(buffer);
}

/*
 * A reused byte buffer with room for an optional varint length prefix in front of
 * the body: the body is written after kPrefixRoom bytes, and finish() writes the
 * prefix right-aligned before it, so framing never moves the body.
 */
class EventBuffer
{
  public:
    static constexpr size_t kPrefixRoom = 10; /* a base-128 varint of 64 bits */

    /* Starts a new body; returns the string to append it to (after the prefix room). */
    std::string &begin()
    {
        release_if_large(bytes_);
        bytes_.resize(kPrefixRoom);
        return bytes_;
    }

    /* The body written since begin(), with its varint length in front when framed. */
    std::string_view finish(bool framed)
    {
        size_t body = bytes_.size() - kPrefixRoom;
        if (!framed)
            return std::string_view(bytes_.data() + kPrefixRoom, body);
        uint8_t prefix[kPrefixRoom];
        size_t n = 0;
        uint64_t v = body;
        do {
            uint8_t b = v & 0x7F;
            v >>= 7;
            prefix[n++] = static_cast<uint8_t>(v != 0 ? (b | 0x80) : b);
        } while (v != 0);
        char *start = bytes_.data() + kPrefixRoom - n;
        for (size_t i = 0; i < n; i++)
            start[i] = static_cast<char>(prefix[i]);
        return std::string_view(start, body + n);
    }

  private:
    std::string bytes_;
};

class Encoder
{
  public:
    virtual ~Encoder() = default;

    /* The event, framed if the options say so; valid until the next encode_event. */
    virtual std::string_view encode_event(const ws_change &change) = 0;

    /* The Kafka key, empty when the change has none; valid until the next encode_key. */
    virtual std::string_view encode_key(const ws_change &change) = 0;
};

std::unique_ptr<Encoder> make_protobuf_encoder(const Options &options);
std::unique_ptr<Encoder> make_debezium_encoder(const Options &options);

/* Checks what every encoder relies on (rows present for their operation, ...). */
void validate_change(const ws_change &change);

/* The row whose is_key columns form the key: after, or before for DELETE. */
const ws_row *key_row(const ws_change &change);

} // namespace walship

#endif
