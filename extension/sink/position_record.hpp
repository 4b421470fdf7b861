/*
 * position_record.hpp: the record an exactly-once stream writes as the last record of
 * every Kafka transaction, to its offsets topic (<topic_prefix>.walship.offsets, compacted),
 * keyed by its transactional id. Its value is a JSON object:
 *
 *   {"stream":"orders","database":"shop","system_identifier":"7433...","timeline":1,
 *    "commit_lsn":"0/1A2B3C4","lsn":27439044,"events":120,"time_us":1764662400000000}
 *
 * commit_lsn (and lsn, the same as a number) is the commit LSN of the last PostgreSQL
 * transaction in that Kafka transaction: every transaction of the stream that committed
 * at or below it is in Kafka, visible to read_committed consumers. system_identifier and
 * timeline say which server's WAL the LSN is in; events is how many events the Kafka
 * transaction held; time_us when it was written (Unix epoch microseconds).
 *
 * Pure functions, so that the unit tests check the format without a broker.
 */
#ifndef WALSHIP_SINK_POSITION_RECORD_HPP
#define WALSHIP_SINK_POSITION_RECORD_HPP

#include <cstdint>
#include <string>
#include <string_view>

namespace walship
{

struct PositionRecord {
    std::string stream;
    std::string database;
    uint64_t system_identifier = 0;
    uint32_t timeline = 0;
    uint64_t commit_lsn = 0;
    uint64_t events = 0;
    int64_t time_us = 0;
};

std::string position_value(const PositionRecord &record);

/* False (and why) when value is not a position record walship wrote. */
bool parse_position_value(std::string_view value, PositionRecord &out, std::string &why);

} // namespace walship

#endif
