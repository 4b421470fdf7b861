/*
 * sink_test_support.hpp: helpers for the Kafka sink's tests, against librdkafka's mock
 * cluster (tests/unit/test_sink_kafka.cpp) and against a real broker
 * (tests/integration/sink_broker/test_sink_real_kafka.cpp).
 *
 * A workload of transactions, the sink driven the way the stream worker drives it
 * (SinkUnderTest), and a reader that checks what reached Kafka: every event once, in
 * order per key, with headers naming its commit. Waits are loops on a condition with
 * generous deadlines, never fixed sleeps.
 */
#ifndef WALSHIP_SINK_TEST_SUPPORT_HPP
#define WALSHIP_SINK_TEST_SUPPORT_HPP

#include "walship_sink.h"
#include "sink_internal.hpp"

#include <librdkafka/rdkafka.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace walship_sink_test
{

using Clock = std::chrono::steady_clock;
using Properties = std::vector<std::pair<std::string, std::string>>;

/* A sink configuration over properties, which it keeps so that its C strings live on. */
struct SinkConfig {
    SinkConfig(const char *bootstrap, Properties props, int partitions = -1,
               int replication_factor = -1)
        : properties(std::move(props))
    {
        for (const auto &property : properties) {
            names.push_back(property.first.c_str());
            values.push_back(property.second.c_str());
        }
        config.bootstrap_servers = bootstrap;
        config.prop_names = names.data();
        config.prop_values = values.data();
        config.nprops = static_cast<int>(properties.size());
        config.topic_partitions = partitions;
        config.topic_replication_factor = replication_factor;
    }

    /* The value of property i was read from file. */
    void read_from(size_t i, const char *file)
    {
        files.resize(properties.size(), nullptr);
        files[i] = file;
        config.prop_files = files.data();
    }

    SinkConfig(const SinkConfig &) = delete; /* config points into this object */
    SinkConfig &operator=(const SinkConfig &) = delete;

    const Properties properties;
    std::vector<const char *> names;
    std::vector<const char *> values;
    std::vector<const char *> files;
    ws_sink_config config{};
};

/* Far longer than anything takes on an idle machine: a deadline only stops a hung test. */
inline constexpr int kPatienceMs = 60000;

/* A record of one event (value NULL: a tombstone), as the plugin hands them over. */
inline ws_record make_record(const void *key, size_t keylen, const void *value, size_t valuelen)
{
    ws_record record{};
    record.key = static_cast<const uint8_t *>(key);
    record.keylen = keylen;
    record.value = static_cast<const uint8_t *>(value);
    record.valuelen = valuelen;
    return record;
}

/* ws_sink_produce of one record made of these parts. */
inline ws_produce_result produce_parts(ws_sink *sink, const char *topic, const char *table,
                                       const void *key, size_t keylen, const void *value,
                                       size_t valuelen, uint64_t commit_lsn, uint32_t xid,
                                       ws_error *err)
{
    ws_record record = make_record(key, keylen, value, valuelen);
    return ws_sink_produce(sink, topic, table, &record, commit_lsn, xid, err);
}

inline void quiet_log(const rd_kafka_t *, int, const char *, const char *) {}

/* Properties that make reconnects quick, so that "broker back up" is noticed fast. */
inline Properties fast_reconnect()
{
    return {{"reconnect.backoff.ms", "50"}, {"reconnect.backoff.max.ms", "500"}};
}

/* One event as a test hands it over; its value names it ("event-<seq>"). */
struct Event {
    std::string topic;
    std::string key;
    std::string value;
};

struct Transaction {
    uint64_t commit_lsn;
    uint32_t xid;
    std::vector<Event> events;
};

/*
 * A workload: `transactions` transactions over `topics` topics and `keys` keys, every
 * fifth one without events (a filtered table), the others with 1..`max_events` events.
 * Event values carry a sequence number from `first_seq` on, so order per key is
 * checkable; workloads sent one after the other use distinct `first_seq`.
 */
inline std::vector<Transaction> workload(int transactions, int max_events,
                                         const std::vector<std::string> &topics, int keys,
                                         uint64_t first_lsn = 0x1000000, int first_seq = 0,
                                         int *total = nullptr)
{
    std::vector<Transaction> txns;
    int seq = first_seq;
    for (int t = 0; t < transactions; ++t) {
        Transaction txn{
            first_lsn + static_cast<uint64_t>(t) * 0x2A0, 700u + static_cast<uint32_t>(t), {}};
        if (t % 5 != 4) {
            int events = 1 + (t * 7) % max_events;
            for (int e = 0; e < events; ++e, ++seq) {
                txn.events.push_back(Event{topics[static_cast<size_t>(seq) % topics.size()],
                                           "key-" + std::to_string((seq * 13) % keys),
                                           "event-" + std::to_string(seq)});
            }
        }
        txns.push_back(std::move(txn));
    }
    if (total != nullptr)
        *total = seq - first_seq;
    return txns;
}

/* Where the sink produces: librdkafka's mock cluster, or a real broker. */
enum class Cluster { Mock, Real };

class SinkUnderTest
{
  public:
    SinkUnderTest(const std::string &bootstraps, const Properties &properties,
                  Cluster cluster = Cluster::Mock, int partitions = -1, int replication_factor = -1)
    {
        SinkConfig config(bootstraps.c_str(), properties, partitions, replication_factor);
        ws_error err{};
        sink_ = ws_sink_create(&config.config, &err);
        if (sink_ == nullptr) {
            ADD_FAILURE() << "ws_sink_create: " << err.message;
            return;
        }
        /* The mock cluster cannot create topics (it names a controller it does not have):
         * give up on creation after one short attempt instead of half a minute. */
        if (cluster == Cluster::Mock)
            walship::sink_set_topic_creation_limits(sink_, 500, 0);
    }
    ~SinkUnderTest()
    {
        destroy();
        if (::testing::Test::HasFailure()) {
            std::fprintf(stderr, "--- last sink log lines ---\n");
            size_t from = logs_.size() > 40 ? logs_.size() - 40 : 0;
            for (size_t i = from; i < logs_.size(); ++i)
                std::fprintf(stderr, "%s\n", logs_[i].c_str());
        }
    }
    SinkUnderTest(const SinkUnderTest &) = delete;
    SinkUnderTest &operator=(const SinkUnderTest &) = delete;

    ws_sink *get() const
    {
        return sink_;
    }

    void destroy()
    {
        if (sink_ != nullptr) {
            drain_logs();
            ws_sink_destroy(sink_);
            sink_ = nullptr;
        }
    }

    /* One ws_sink_poll; remembers the last error. */
    ws_status poll(int timeout_ms)
    {
        ws_error err{};
        ws_status status = ws_sink_poll(sink_, timeout_ms, &err);
        if (status != WS_OK)
            last_poll_error_ = err.message;
        drain_logs();
        return status;
    }

    /* Polls until `done` holds or the patience runs out. */
    bool poll_until(const std::function<bool()> &done, int patience_ms = kPatienceMs)
    {
        const Clock::time_point deadline = Clock::now() + std::chrono::milliseconds(patience_ms);
        while (!done()) {
            if (Clock::now() >= deadline)
                return false;
            poll(20);
        }
        return true;
    }

    /* ws_sink_produce the way the stream worker does: on QUEUE_FULL (the queue) or
     * TOPIC_PENDING (the topic's creation), poll and retry. */
    ws_produce_result produce(const Event &event, const Transaction &txn)
    {
        const Clock::time_point deadline = Clock::now() + std::chrono::milliseconds(kPatienceMs);
        for (;;) {
            ws_error err{};
            ws_record record = make_record(event.key.data(), event.key.size(), event.value.data(),
                                           event.value.size());
            ws_produce_result result = ws_sink_produce(sink_, event.topic.c_str(), nullptr, &record,
                                                       txn.commit_lsn, txn.xid, &err);
            ws_sink_stats stats;
            ws_sink_get_stats(sink_, &stats);
            max_in_flight_ = std::max(max_in_flight_, stats.in_flight);
            if (result != WS_PRODUCE_QUEUE_FULL && result != WS_PRODUCE_TOPIC_PENDING) {
                if (result != WS_PRODUCE_OK)
                    last_produce_error_ = err.message;
                return result;
            }
            if (result == WS_PRODUCE_QUEUE_FULL)
                ++queue_full_;
            if (Clock::now() >= deadline) {
                last_produce_error_ =
                    "still waiting after the test's patience: " + std::string(err.message);
                return WS_PRODUCE_FAILED;
            }
            poll(10);
        }
    }

    /* Begins, produces and ends every transaction, in order. */
    [[nodiscard]] bool hand_over(const std::vector<Transaction> &txns)
    {
        for (const Transaction &txn : txns) {
            ws_sink_begin_txn(sink_, txn.commit_lsn);
            for (const Event &event : txn.events) {
                if (produce(event, txn) != WS_PRODUCE_OK) {
                    ADD_FAILURE() << "produce: " << last_produce_error_;
                    return false;
                }
            }
            ws_sink_end_txn(sink_, txn.commit_lsn);
        }
        return true;
    }

    /* Polls until nothing is pending; every poll must succeed. */
    [[nodiscard]] bool deliver_all()
    {
        bool failed = false;
        if (!poll_until([&] {
                if (poll(0) != WS_OK)
                    failed = true;
                return failed || ws_sink_idle(sink_);
            })) {
            ADD_FAILURE() << "not idle in time; in flight: " << stats().in_flight;
            return false;
        }
        if (failed)
            ADD_FAILURE() << "poll: " << last_poll_error_;
        return !failed;
    }

    ws_sink_stats stats() const
    {
        ws_sink_stats out;
        ws_sink_get_stats(sink_, &out);
        return out;
    }

    uint64_t watermark() const
    {
        return ws_sink_watermark(sink_);
    }

    bool has_log(const std::string &part)
    {
        drain_logs();
        return std::any_of(logs_.begin(), logs_.end(), [&](const std::string &line) {
            return line.find(part) != std::string::npos;
        });
    }

    const std::string &last_poll_error() const
    {
        return last_poll_error_;
    }
    const std::string &last_produce_error() const
    {
        return last_produce_error_;
    }
    int queue_full() const
    {
        return queue_full_;
    }
    uint64_t max_in_flight() const
    {
        return max_in_flight_;
    }

  private:
    void drain_logs()
    {
        int level = 0;
        char line[1024];
        while (sink_ != nullptr && ws_sink_next_log(sink_, &level, line, sizeof(line)))
            logs_.push_back(std::to_string(level) + " " + line);
    }

    ws_sink *sink_ = nullptr;
    std::vector<std::string> logs_;
    std::string last_poll_error_;
    std::string last_produce_error_;
    int queue_full_ = 0;
    uint64_t max_in_flight_ = 0;
};

/* One message as read back from the cluster. */
struct Consumed {
    int32_t partition;
    int64_t offset;
    std::string key;
    std::string value;
    std::string lsn_header;
    std::string xid_header;
};

inline std::string header(rd_kafka_message_t *message, const char *name)
{
    rd_kafka_headers_t *headers = nullptr;
    if (rd_kafka_message_headers(message, &headers) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return "<no headers>";
    const void *value = nullptr;
    size_t size = 0;
    if (rd_kafka_header_get_last(headers, name, &value, &size) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return "<missing>";
    return std::string(static_cast<const char *>(value), size);
}

/*
 * Everything the topic holds: the sum of the partitions' high watermarks says how many
 * messages exist (so a duplicate cannot hide), then a consumer reads them all.
 */
inline std::vector<Consumed> read_topic(const std::string &bootstraps, const std::string &topic,
                                        int64_t *stored, int *partition_count = nullptr)
{
    std::vector<Consumed> out;
    *stored = -1;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char errstr[512];
    const Properties settings = {{"bootstrap.servers", bootstraps},
                                 {"group.id", "walship-test-reader"},
                                 {"enable.auto.commit", "false"},
                                 {"enable.partition.eof", "true"}};
    for (const auto &setting : settings) {
        if (rd_kafka_conf_set(conf, setting.first.c_str(), setting.second.c_str(), errstr,
                              sizeof(errstr)) != RD_KAFKA_CONF_OK) {
            ADD_FAILURE() << errstr;
            rd_kafka_conf_destroy(conf);
            return out;
        }
    }
    rd_kafka_conf_set_log_cb(conf, quiet_log);
    rd_kafka_t *consumer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    if (consumer == nullptr) {
        ADD_FAILURE() << errstr;
        rd_kafka_conf_destroy(conf);
        return out;
    }

    rd_kafka_topic_t *handle = rd_kafka_topic_new(consumer, topic.c_str(), nullptr);
    const rd_kafka_metadata_t *metadata = nullptr;
    int partitions = 0;
    if (rd_kafka_metadata(consumer, 0, handle, &metadata, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        metadata->topic_cnt == 1)
        partitions = metadata->topics[0].partition_cnt;
    if (metadata != nullptr)
        rd_kafka_metadata_destroy(metadata);
    rd_kafka_topic_destroy(handle);
    if (partition_count != nullptr)
        *partition_count = partitions;

    int64_t total = 0;
    std::map<int32_t, int64_t> high;
    rd_kafka_topic_partition_list_t *assignment = rd_kafka_topic_partition_list_new(partitions);
    for (int32_t p = 0; p < partitions; ++p) {
        int64_t low = 0;
        int64_t hi = 0;
        rd_kafka_resp_err_t err =
            rd_kafka_query_watermark_offsets(consumer, topic.c_str(), p, &low, &hi, 10000);
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
            ADD_FAILURE() << "watermarks of " << topic << " [" << p
                          << "]: " << rd_kafka_err2str(err);
        high[p] = hi;
        total += hi - low;
        rd_kafka_topic_partition_list_add(assignment, topic.c_str(), p)->offset =
            RD_KAFKA_OFFSET_BEGINNING;
    }
    *stored = total;
    rd_kafka_assign(consumer, assignment);
    rd_kafka_topic_partition_list_destroy(assignment);

    std::set<int32_t> at_end;
    for (const auto &partition : high) {
        if (partition.second == 0)
            at_end.insert(partition.first);
    }
    const Clock::time_point deadline = Clock::now() + std::chrono::milliseconds(kPatienceMs);
    while (static_cast<int>(at_end.size()) < partitions && Clock::now() < deadline) {
        rd_kafka_message_t *message = rd_kafka_consumer_poll(consumer, 100);
        if (message == nullptr)
            continue;
        if (message->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            if (message->offset >= high[message->partition])
                at_end.insert(message->partition);
        } else if (message->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            ADD_FAILURE() << "consuming " << topic << ": " << rd_kafka_message_errstr(message);
        } else {
            out.push_back(
                Consumed{message->partition, message->offset,
                         std::string(static_cast<const char *>(message->key), message->key_len),
                         std::string(static_cast<const char *>(message->payload), message->len),
                         header(message, "walship.lsn"), header(message, "walship.xid")});
            if (message->offset + 1 >= high[message->partition])
                at_end.insert(message->partition);
        }
        rd_kafka_message_destroy(message);
    }
    EXPECT_EQ(static_cast<int>(at_end.size()), partitions) << "could not read " << topic;
    rd_kafka_consumer_close(consumer);
    rd_kafka_destroy(consumer);
    return out;
}

inline int sequence_of(const std::string &value)
{
    return std::stoi(value.substr(value.find('-') + 1));
}

inline std::string lsn_text(uint64_t lsn)
{
    char text[32];
    std::snprintf(text, sizeof(text), "%X/%X", static_cast<unsigned>(lsn >> 32),
                  static_cast<unsigned>(lsn & 0xFFFFFFFFu));
    return text;
}

enum class Delivery { ExactlyOnce, AtLeastOnce };

/*
 * What Kafka holds for `topic` is the events handed over for it: each once (or, for
 * AtLeastOnce, at least once, judged by first appearances), in order per key (a key's
 * events share a partition), with headers naming their commit.
 */
inline void expect_delivered(const std::string &bootstraps, const std::string &topic,
                             const std::vector<Transaction> &txns, Delivery delivery)
{
    std::map<std::string, const Transaction *> txn_of;
    std::map<std::string, std::string> key_of;
    for (const Transaction &txn : txns) {
        for (const Event &event : txn.events) {
            if (event.topic == topic) {
                txn_of[event.value] = &txn;
                key_of[event.value] = event.key;
            }
        }
    }
    int64_t stored = 0;
    std::vector<Consumed> messages = read_topic(bootstraps, topic, &stored);
    ASSERT_EQ(static_cast<int64_t>(messages.size()), stored) << "messages read from " << topic;
    if (delivery == Delivery::ExactlyOnce)
        ASSERT_EQ(messages.size(), txn_of.size()) << "messages stored in " << topic;
    else
        ASSERT_GE(messages.size(), txn_of.size()) << "messages stored in " << topic;

    std::sort(messages.begin(), messages.end(), [](const Consumed &a, const Consumed &b) {
        return a.partition != b.partition ? a.partition < b.partition : a.offset < b.offset;
    });
    std::set<std::string> seen;
    std::map<std::string, std::pair<int32_t, int>> last_of_key; /* partition, sequence */
    for (const Consumed &message : messages) {
        if (!seen.insert(message.value).second) {
            ASSERT_EQ(delivery, Delivery::AtLeastOnce) << "duplicate " << message.value;
            continue;
        }
        auto expected = txn_of.find(message.value);
        ASSERT_NE(expected, txn_of.end()) << "unexpected " << message.value;
        EXPECT_EQ(message.key, key_of[message.value]);
        EXPECT_EQ(message.lsn_header, lsn_text(expected->second->commit_lsn)) << message.value;
        EXPECT_EQ(message.xid_header, std::to_string(expected->second->xid)) << message.value;
        int seq = sequence_of(message.value);
        auto last = last_of_key.find(message.key);
        if (last != last_of_key.end()) {
            EXPECT_EQ(last->second.first, message.partition)
                << "key " << message.key << " in two partitions";
            EXPECT_LT(last->second.second, seq) << "key " << message.key << " out of order";
        }
        last_of_key[message.key] = {message.partition, seq};
    }
    EXPECT_EQ(seen.size(), txn_of.size()) << "events missing from " << topic;
}

inline void expect_delivered_exactly_once(const std::string &bootstraps, const std::string &topic,
                                          const std::vector<Transaction> &txns)
{
    expect_delivered(bootstraps, topic, txns, Delivery::ExactlyOnce);
}

} // namespace walship_sink_test

#endif
