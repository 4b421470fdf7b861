/*
 * log_queue.hpp: the sink's log lines (librdkafka's, and its own about topics and dead
 * letters), scrubbed of secrets and queued until the worker takes them on its thread.
 */
#ifndef WALSHIP_SINK_LOG_QUEUE_HPP
#define WALSHIP_SINK_LOG_QUEUE_HPP

#include "properties.hpp"

#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <utility>

namespace walship
{

/* Syslog levels, as librdkafka uses them. */
constexpr int kLogWarning = 4;
constexpr int kLogInfo = 6;

struct LogLine {
    int level;
    std::string text;
};

class LogQueue
{
  public:
    /* Beyond this many waiting lines the oldest are dropped (and counted) rather than
     * growing without bound when the worker does not read them. */
    static constexpr size_t kMaxLines = 1000;

    /* Lines are scrubbed of scrubber's secrets; it must outlive this object. */
    explicit LogQueue(const SecretScrubber &scrubber) : scrubber_(scrubber) {}

    void add(int level, std::string text)
    {
        if (lines_.size() >= kMaxLines) {
            lines_.pop_front();
            ++dropped_;
        }
        lines_.push_back(LogLine{level, scrubber_.scrub(std::move(text))});
    }

    /* A line that could not be queued (no memory to describe it). */
    void count_dropped() noexcept
    {
        ++dropped_;
    }

    /* The oldest line, after a line saying how many were dropped if some were. */
    bool take(LogLine &line)
    {
        if (dropped_ > 0) {
            const uint64_t dropped = dropped_;
            dropped_ = 0;
            lines_.push_front(LogLine{kLogWarning, std::to_string(dropped) +
                                                       " Kafka log lines were dropped: "
                                                       "the stream worker read too few"});
        }
        if (lines_.empty())
            return false;
        line = std::move(lines_.front());
        lines_.pop_front();
        return true;
    }

  private:
    const SecretScrubber &scrubber_;
    std::deque<LogLine> lines_;
    uint64_t dropped_ = 0;
};

} // namespace walship

#endif
