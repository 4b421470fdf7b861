/*
 * test_sink_kafka.cpp: the sink against librdkafka's mock cluster, with faults injected:
 * brokers down, request errors, lost acknowledgements, a slow broker, permanent and fatal
 * errors. Each test reads what reached Kafka back with a consumer and checks what a user
 * relies on: every event once, in order per key, and a watermark that never claims more
 * than Kafka holds.
 *
 * Waits are loops on a condition with generous deadlines, never fixed sleeps, so that a
 * slow or busy machine makes a test slower, not red.
 */
#include "walship_sink.h"
#include "sink_internal.hpp"

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace
{

using Clock = std::chrono::steady_clock;
using Properties = std::vector<std::pair<std::string, std::string>>;

/* Far longer than anything takes on an idle machine: a deadline only stops a hung test. */
constexpr int kPatienceMs = 60000;
constexpr int16_t kProduceApiKey = 0; /* Kafka protocol: ProduceRequest */

void quiet_log(const rd_kafka_t *, int, const char *, const char *) {}

/* Properties that make reconnects quick, so that "broker back up" is noticed fast. */
Properties fast_reconnect()
{
    return {{"reconnect.backoff.ms", "50"}, {"reconnect.backoff.max.ms", "500"}};
}

class MockCluster
{
  public:
    explicit MockCluster(int brokers)
    {
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        rd_kafka_conf_set_log_cb(conf, quiet_log);
        char errstr[512];
        handle_ = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
        if (handle_ == nullptr) {
            ADD_FAILURE() << "could not create the mock cluster's handle: " << errstr;
            rd_kafka_conf_destroy(conf);
            return;
        }
        cluster_ = rd_kafka_mock_cluster_new(handle_, brokers);
        if (cluster_ == nullptr)
            ADD_FAILURE() << "could not create the mock cluster";
    }
    ~MockCluster()
    {
        if (cluster_ != nullptr)
            rd_kafka_mock_cluster_destroy(cluster_);
        if (handle_ != nullptr)
            rd_kafka_destroy(handle_);
    }
    MockCluster(const MockCluster &) = delete;
    MockCluster &operator=(const MockCluster &) = delete;

    rd_kafka_mock_cluster_t *get() const
    {
        return cluster_;
    }
    std::string bootstraps() const
    {
        return rd_kafka_mock_cluster_bootstraps(cluster_);
    }

  private:
    rd_kafka_t *handle_ = nullptr;
    rd_kafka_mock_cluster_t *cluster_ = nullptr;
};

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
std::vector<Transaction> workload(int transactions, int max_events,
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
        std::vector<const char *> names;
        std::vector<const char *> values;
        for (const auto &property : properties) {
            names.push_back(property.first.c_str());
            values.push_back(property.second.c_str());
        }
        ws_sink_config config{};
        config.bootstrap_servers = bootstraps.c_str();
        config.prop_names = names.data();
        config.prop_values = values.data();
        config.nprops = static_cast<int>(properties.size());
        config.topic_partitions = partitions;
        config.topic_replication_factor = replication_factor;
        char errmsg[WS_ERRMSG_SIZE] = "";
        sink_ = ws_sink_create(&config, errmsg);
        if (sink_ == nullptr) {
            ADD_FAILURE() << "ws_sink_create: " << errmsg;
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
        char errmsg[WS_ERRMSG_SIZE] = "";
        ws_status status = ws_sink_poll(sink_, timeout_ms, errmsg);
        if (status != WS_OK)
            last_poll_error_ = errmsg;
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

    /* ws_sink_produce the way the stream worker does: on QUEUE_FULL, poll and retry. */
    ws_produce_result produce(const Event &event, const Transaction &txn)
    {
        const Clock::time_point deadline = Clock::now() + std::chrono::milliseconds(kPatienceMs);
        for (;;) {
            char errmsg[WS_ERRMSG_SIZE] = "";
            ws_produce_result result = ws_sink_produce(
                sink_, event.topic.c_str(), nullptr,
                reinterpret_cast<const uint8_t *>(event.key.data()), event.key.size(),
                reinterpret_cast<const uint8_t *>(event.value.data()), event.value.size(),
                txn.commit_lsn, txn.xid, errmsg);
            ws_sink_stats stats;
            ws_sink_get_stats(sink_, &stats);
            max_in_flight_ = std::max(max_in_flight_, stats.in_flight);
            if (result != WS_PRODUCE_QUEUE_FULL) {
                if (result != WS_PRODUCE_OK)
                    last_produce_error_ = errmsg;
                return result;
            }
            ++queue_full_;
            if (Clock::now() >= deadline) {
                last_produce_error_ =
                    "still QUEUE_FULL after the test's patience: " + std::string(errmsg);
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

std::string header(rd_kafka_message_t *message, const char *name)
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
std::vector<Consumed> read_topic(const std::string &bootstraps, const std::string &topic,
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

int sequence_of(const std::string &value)
{
    return std::stoi(value.substr(value.find('-') + 1));
}

std::string lsn_text(uint64_t lsn)
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
void expect_delivered(const std::string &bootstraps, const std::string &topic,
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

void expect_delivered_exactly_once(const std::string &bootstraps, const std::string &topic,
                                   const std::vector<Transaction> &txns)
{
    expect_delivered(bootstraps, topic, txns, Delivery::ExactlyOnce);
}

} // namespace

TEST(SinkKafka, DeliversEveryEventAndTheWatermarkReachesTheLastCommit)
{
    MockCluster cluster(3);
    SinkUnderTest sink(cluster.bootstraps(), {});
    ASSERT_NE(sink.get(), nullptr);
    int total = 0;
    std::vector<Transaction> txns =
        workload(40, 12, {"app.public.orders", "app.public.items"}, 9, 0x1000000, 0, &total);
    ASSERT_TRUE(sink.hand_over(txns));
    ASSERT_TRUE(sink.deliver_all());

    EXPECT_EQ(sink.watermark(), txns.back().commit_lsn);
    ws_sink_stats stats = sink.stats();
    EXPECT_EQ(stats.events_produced, static_cast<uint64_t>(total));
    EXPECT_EQ(stats.events_acked, static_cast<uint64_t>(total));
    EXPECT_EQ(stats.in_flight, 0u);
    EXPECT_GT(stats.bytes_produced, 0u);
    EXPECT_GT(stats.last_ack_time_us, 0);
    char flush_error[WS_ERRMSG_SIZE] = "";
    EXPECT_EQ(ws_sink_flush(sink.get(), 1000, flush_error), WS_OK) << flush_error;

    expect_delivered_exactly_once(cluster.bootstraps(), "app.public.orders", txns);
    expect_delivered_exactly_once(cluster.bootstraps(), "app.public.items", txns);
}

TEST(SinkKafka, TopicCreationThatCannotCompleteIsReportedNotFatal)
{
    /* The mock cluster cannot create topics: the sink says so in its log, produces
     * anyway (here the broker creates the topic) and does not try again for the next
     * topic. */
    MockCluster cluster(1);
    SinkUnderTest sink(cluster.bootstraps(), {});
    std::vector<Transaction> txns = workload(3, 2, {"app.public.accounts"}, 2);
    ASSERT_TRUE(sink.hand_over(txns));
    ASSERT_TRUE(sink.deliver_all());
    EXPECT_EQ(sink.watermark(), txns.back().commit_lsn);
    EXPECT_TRUE(sink.has_log("could not create Kafka topic \"app.public.accounts\""));
    expect_delivered_exactly_once(cluster.bootstraps(), "app.public.accounts", txns);

    Transaction next{0x2000000, 9, {Event{"app.public.payments", "k", "event-100"}}};
    ws_sink_begin_txn(sink.get(), next.commit_lsn);
    char errmsg[WS_ERRMSG_SIZE] = "";
    EXPECT_EQ(ws_sink_produce(sink.get(), "app.public.payments", nullptr, nullptr, 0, nullptr, 0,
                              next.commit_lsn, next.xid, errmsg),
              WS_PRODUCE_OK)
        << errmsg;
    ws_sink_end_txn(sink.get(), next.commit_lsn);
    ASSERT_TRUE(sink.deliver_all());
    EXPECT_FALSE(sink.has_log("could not create Kafka topic \"app.public.payments\""));
}

TEST(SinkKafka, ZeroEventTransactionsMoveTheWatermarkWithoutKafka)
{
    MockCluster cluster(1);
    SinkUnderTest sink(cluster.bootstraps(), {});
    ws_sink_begin_txn(sink.get(), 0x100);
    EXPECT_FALSE(ws_sink_idle(sink.get()));
    ws_sink_end_txn(sink.get(), 0x100);
    EXPECT_EQ(sink.watermark(), 0x100u) << "confirmed at once, before any poll";
    EXPECT_TRUE(ws_sink_idle(sink.get()));

    /* Behind a transaction with events, an empty one waits, then moves it all. */
    Transaction with_event{0x200, 42, {Event{"app.public.t", "k", "event-0"}}};
    ws_sink_begin_txn(sink.get(), with_event.commit_lsn);
    ASSERT_EQ(sink.produce(with_event.events[0], with_event), WS_PRODUCE_OK)
        << sink.last_produce_error();
    ws_sink_end_txn(sink.get(), with_event.commit_lsn);
    ws_sink_begin_txn(sink.get(), 0x300);
    ws_sink_end_txn(sink.get(), 0x300);
    EXPECT_EQ(sink.watermark(), 0x100u);
    ASSERT_TRUE(sink.deliver_all());
    EXPECT_EQ(sink.watermark(), 0x300u);
}

TEST(SinkKafka, BrokersDownThenUpLoseNothingAndConfirmNothingEarly)
{
    MockCluster cluster(3);
    SinkUnderTest sink(cluster.bootstraps(), fast_reconnect());
    const std::vector<std::string> topics = {"app.public.orders"};
    std::vector<Transaction> before = workload(5, 6, topics, 5, 0x1000000);
    ASSERT_TRUE(sink.hand_over(before));
    ASSERT_TRUE(sink.deliver_all());
    const uint64_t confirmed = before.back().commit_lsn;
    ASSERT_EQ(sink.watermark(), confirmed);

    ASSERT_EQ(rd_kafka_mock_broker_set_down(cluster.get(), -1), RD_KAFKA_RESP_ERR_NO_ERROR);
    std::vector<Transaction> during = workload(20, 8, topics, 5, 0x2000000, 1000);
    ASSERT_TRUE(sink.hand_over(during));
    char error[WS_ERRMSG_SIZE] = "";
    ASSERT_TRUE(sink.poll_until([&] { return ws_sink_last_error(sink.get(), error); }))
        << "no broker error reported while every broker is down";
    /* A good while down: the producer retries, nothing is acknowledged or confirmed. */
    const Clock::time_point until = Clock::now() + std::chrono::milliseconds(1500);
    sink.poll_until([&] {
        EXPECT_EQ(sink.watermark(), confirmed);
        return Clock::now() >= until;
    });
    EXPECT_GT(sink.stats().in_flight, 0u);
    EXPECT_EQ(sink.poll(0), WS_OK) << "an outage is not a failure: " << sink.last_poll_error();

    ASSERT_EQ(rd_kafka_mock_broker_set_up(cluster.get(), -1), RD_KAFKA_RESP_ERR_NO_ERROR);
    ASSERT_TRUE(sink.deliver_all());
    EXPECT_EQ(sink.watermark(), during.back().commit_lsn);
    EXPECT_FALSE(ws_sink_last_error(sink.get(), error))
        << "cleared by the deliveries, still: " << error;

    std::vector<Transaction> all = before;
    all.insert(all.end(), during.begin(), during.end());
    expect_delivered_exactly_once(cluster.bootstraps(), "app.public.orders", all);
}

TEST(SinkKafka, RetriableProduceErrorsStillDeliverOnceInOrder)
{
    MockCluster cluster(3);
    SinkUnderTest sink(cluster.bootstraps(), fast_reconnect());
    const std::vector<std::string> topics = {"app.public.orders", "app.public.items"};
    /* Warm up so that the errors hit Produce requests, not topic discovery. */
    std::vector<Transaction> warm_up = workload(2, 2, topics, 4, 0x100000);
    ASSERT_TRUE(sink.hand_over(warm_up));
    ASSERT_TRUE(sink.deliver_all());

    rd_kafka_mock_push_request_errors(
        cluster.get(), kProduceApiKey, 8, RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
        RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT, RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
        RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE, RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
        RD_KAFKA_RESP_ERR__TRANSPORT, RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
        RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND);
    std::vector<Transaction> txns = workload(30, 10, topics, 7, 0x1000000, 1000);
    ASSERT_TRUE(sink.hand_over(txns));
    ASSERT_TRUE(sink.deliver_all());
    EXPECT_EQ(sink.watermark(), txns.back().commit_lsn);

    std::vector<Transaction> all = warm_up;
    all.insert(all.end(), txns.begin(), txns.end());
    expect_delivered_exactly_once(cluster.bootstraps(), "app.public.orders", all);
    expect_delivered_exactly_once(cluster.bootstraps(), "app.public.items", all);
}

TEST(SinkKafka, LostAcknowledgementIsRetriedNotFailed)
{
    /* The broker writes a batch but answers after the client gave up waiting: the
     * producer reconnects and sends the same batch again. Kafka recognizes it by its
     * producer id and sequence number and stores it once; librdkafka 2.0.2's mock does
     * not check sequences of non-transactional producers and stores it twice. So here:
     * no failure, the watermark completes, every event is there in order per key. */
    MockCluster cluster(1);
    Properties properties = fast_reconnect();
    properties.push_back({"socket.timeout.ms", "1000"});
    properties.push_back({"request.timeout.ms", "1000"});
    SinkUnderTest sink(cluster.bootstraps(), properties);
    const std::vector<std::string> topics = {"app.public.orders"};
    std::vector<Transaction> warm_up = workload(1, 1, topics, 3, 0x100000);
    ASSERT_TRUE(sink.hand_over(warm_up));
    ASSERT_TRUE(sink.deliver_all());

    ASSERT_EQ(rd_kafka_mock_broker_push_request_error_rtts(cluster.get(), 1, kProduceApiKey, 1,
                                                           RD_KAFKA_RESP_ERR_NO_ERROR, 3000),
              RD_KAFKA_RESP_ERR_NO_ERROR);
    std::vector<Transaction> txns = workload(10, 5, topics, 3, 0x1000000, 1000);
    ASSERT_TRUE(sink.hand_over(txns));
    ASSERT_TRUE(sink.deliver_all());
    EXPECT_EQ(sink.watermark(), txns.back().commit_lsn);
    EXPECT_TRUE(sink.has_log("timed out")) << "the acknowledgement was not lost after all";

    std::vector<Transaction> all = warm_up;
    all.insert(all.end(), txns.begin(), txns.end());
    expect_delivered(cluster.bootstraps(), "app.public.orders", all, Delivery::AtLeastOnce);
}

TEST(SinkKafka, SlowBrokerGivesBackpressureNotMemory)
{
    MockCluster cluster(1);
    Properties properties = {{"queue.buffering.max.messages", "20"}};
    SinkUnderTest sink(cluster.bootstraps(), properties);
    ASSERT_EQ(rd_kafka_mock_broker_set_rtt(cluster.get(), -1, 50), RD_KAFKA_RESP_ERR_NO_ERROR);
    int total = 0;
    std::vector<Transaction> txns =
        workload(40, 12, {"app.public.orders"}, 5, 0x1000000, 0, &total);
    ASSERT_GT(total, 100);
    ASSERT_TRUE(sink.hand_over(txns));
    EXPECT_GT(sink.queue_full(), 0) << "a queue of 20 must fill against a slow broker";
    EXPECT_LE(sink.max_in_flight(), 20u) << "the queue bound holds";
    ASSERT_TRUE(sink.deliver_all());
    EXPECT_EQ(sink.watermark(), txns.back().commit_lsn);
    expect_delivered_exactly_once(cluster.bootstraps(), "app.public.orders", txns);
}

TEST(SinkKafka, PermanentDeliveryErrorFailsThePollAndHoldsTheWatermark)
{
    MockCluster cluster(1);
    SinkUnderTest sink(cluster.bootstraps(), {});
    Transaction first{0x1000, 1, {Event{"app.public.orders", "k1", "event-0"}}};
    Transaction second{0x2000, 2, {Event{"app.public.orders", "k2", "event-1"}}};
    Transaction third{0x3000, 3, {Event{"app.public.orders", "k3", "event-2"}}};
    ASSERT_TRUE(sink.hand_over({first}));
    ASSERT_TRUE(sink.deliver_all());
    ASSERT_EQ(sink.watermark(), first.commit_lsn);

    /* Not retriable: Kafka refuses the write for good. */
    rd_kafka_mock_push_request_errors(cluster.get(), kProduceApiKey, 1,
                                      RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
    ASSERT_TRUE(sink.hand_over({second}));
    ASSERT_TRUE(sink.poll_until([&] { return sink.poll(0) != WS_OK; }))
        << "the failed delivery was never reported";
    EXPECT_NE(sink.last_poll_error().find("\"app.public.orders\""), std::string::npos)
        << sink.last_poll_error();
    EXPECT_NE(sink.last_poll_error().find("TOPIC_AUTHORIZATION_FAILED"), std::string::npos)
        << sink.last_poll_error();

    /* Later transactions may well reach Kafka; the watermark still stays in front of the
     * failed one, and every poll keeps saying the stream must restart. */
    ws_sink_begin_txn(sink.get(), third.commit_lsn);
    char errmsg[WS_ERRMSG_SIZE] = "";
    EXPECT_EQ(ws_sink_produce(sink.get(), "app.public.orders", nullptr, nullptr, 0, nullptr, 0,
                              third.commit_lsn, third.xid, errmsg),
              WS_PRODUCE_FAILED);
    ws_sink_end_txn(sink.get(), third.commit_lsn);
    EXPECT_EQ(ws_sink_flush(sink.get(), 5000, errmsg), WS_ERROR);
    EXPECT_EQ(sink.poll(10), WS_ERROR);
    EXPECT_EQ(sink.watermark(), first.commit_lsn);
    EXPECT_FALSE(ws_sink_idle(sink.get()));
}

TEST(SinkKafka, MissingTopicThatIsNotCreatedFailsInsteadOfWaitingForever)
{
    /* Infinite message timeout must not mean "stuck": a topic that does not exist and
     * that nobody creates fails its events once librdkafka gives up looking for it. */
    MockCluster cluster(1);
    /* The mock creates topics whatever the client asks; make it say "unknown topic". */
    rd_kafka_mock_topic_set_error(cluster.get(), "app.public.missing",
                                  RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART);
    SinkUnderTest sink(cluster.bootstraps(), {{"allow.auto.create.topics", "false"},
                                              {"topic.metadata.propagation.max.ms", "1000"}});
    Transaction txn{0x1000, 1, {Event{"app.public.missing", "k", "event-0"}}};
    ASSERT_TRUE(sink.hand_over({txn}));
    ASSERT_TRUE(sink.poll_until([&] { return sink.poll(0) != WS_OK; }));
    EXPECT_NE(sink.last_poll_error().find("\"app.public.missing\""), std::string::npos)
        << sink.last_poll_error();
    EXPECT_EQ(sink.watermark(), 0u);
}

TEST(SinkKafka, BoundedMessageTimeoutFailsTheStreamDuringAnOutage)
{
    /* The alternative to the infinite default: events time out, the stream restarts from
     * its slot. Nothing is confirmed either way. */
    MockCluster cluster(1);
    Properties properties = fast_reconnect();
    properties.push_back({"message.timeout.ms", "1500"});
    SinkUnderTest sink(cluster.bootstraps(), properties);
    std::vector<Transaction> before = workload(1, 1, {"app.public.orders"}, 1, 0x1000);
    ASSERT_TRUE(sink.hand_over(before));
    ASSERT_TRUE(sink.deliver_all());

    ASSERT_EQ(rd_kafka_mock_broker_set_down(cluster.get(), -1), RD_KAFKA_RESP_ERR_NO_ERROR);
    std::vector<Transaction> during = workload(3, 3, {"app.public.orders"}, 1, 0x2000, 100);
    ASSERT_TRUE(sink.hand_over(during));
    ASSERT_TRUE(sink.poll_until([&] { return sink.poll(0) != WS_OK; }));
    EXPECT_NE(sink.last_poll_error().find("_MSG_TIMED_OUT"), std::string::npos)
        << sink.last_poll_error();
    EXPECT_EQ(sink.watermark(), before.back().commit_lsn);
}

TEST(SinkKafka, FatalProducerErrorStopsTheStream)
{
    MockCluster cluster(1);
    SinkUnderTest sink(cluster.bootstraps(), {});
    std::vector<Transaction> before = workload(2, 2, {"app.public.orders"}, 2, 0x1000);
    ASSERT_TRUE(sink.hand_over(before));
    ASSERT_TRUE(sink.deliver_all());
    ASSERT_EQ(sink.watermark(), before.back().commit_lsn);

    Transaction open_txn{0x9000, 9, {Event{"app.public.orders", "k", "event-99"}}};
    ws_sink_begin_txn(sink.get(), open_txn.commit_lsn);
    ASSERT_EQ(sink.produce(open_txn.events[0], open_txn), WS_PRODUCE_OK);
    ASSERT_EQ(rd_kafka_test_fatal_error(walship::sink_kafka_handle(sink.get()),
                                        RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
                                        "fabricated by the test"),
              RD_KAFKA_RESP_ERR_NO_ERROR);
    ASSERT_TRUE(sink.poll_until([&] { return sink.poll(0) != WS_OK; }));
    EXPECT_NE(sink.last_poll_error().find("fatal"), std::string::npos) << sink.last_poll_error();
    EXPECT_NE(sink.last_poll_error().find("fabricated by the test"), std::string::npos)
        << sink.last_poll_error();
    EXPECT_EQ(sink.produce(open_txn.events[0], open_txn), WS_PRODUCE_FAILED);
    ws_sink_end_txn(sink.get(), open_txn.commit_lsn);
    char errmsg[WS_ERRMSG_SIZE] = "";
    EXPECT_EQ(ws_sink_flush(sink.get(), 2000, errmsg), WS_ERROR);
    EXPECT_EQ(sink.watermark(), before.back().commit_lsn);
}

TEST(SinkKafka, EventsOutsideTheirTransactionAreABug)
{
    MockCluster cluster(1);
    SinkUnderTest sink(cluster.bootstraps(), {});
    char errmsg[WS_ERRMSG_SIZE] = "";
    EXPECT_EQ(ws_sink_produce(sink.get(), "app.public.t", nullptr, nullptr, 0, nullptr, 0, 0x10, 1,
                              errmsg),
              WS_PRODUCE_FAILED);
    EXPECT_NE(std::string(errmsg).find("outside a transaction"), std::string::npos) << errmsg;
    EXPECT_EQ(sink.poll(0), WS_ERROR);
    EXPECT_NE(sink.last_poll_error().find("walship bug"), std::string::npos);

    SinkUnderTest other(cluster.bootstraps(), {});
    ws_sink_begin_txn(other.get(), 0x20);
    EXPECT_EQ(ws_sink_produce(other.get(), "app.public.t", nullptr, nullptr, 0, nullptr, 0, 0x10, 1,
                              errmsg),
              WS_PRODUCE_FAILED);
    EXPECT_NE(std::string(errmsg).find("0/20"), std::string::npos) << errmsg;
    ws_sink_end_txn(other.get(), 0x20);
    EXPECT_EQ(other.watermark(), 0u) << "the transaction lost an event";
}

TEST(SinkKafka, InvalidTopicNameIsRefusedWithTheReason)
{
    MockCluster cluster(1);
    SinkUnderTest sink(cluster.bootstraps(), {});
    Transaction txn{0x10, 1, {Event{"app.public.Bestellungen ä", "k", "event-0"}}};
    ws_sink_begin_txn(sink.get(), txn.commit_lsn);
    EXPECT_EQ(sink.produce(txn.events[0], txn), WS_PRODUCE_FAILED);
    EXPECT_NE(sink.last_produce_error().find("invalid Kafka topic name"), std::string::npos)
        << sink.last_produce_error();
    ws_sink_end_txn(sink.get(), txn.commit_lsn);
    EXPECT_EQ(sink.watermark(), 0u);
}

TEST(SinkKafka, TombstonesAndKeylessEventsAreDelivered)
{
    MockCluster cluster(1);
    SinkUnderTest sink(cluster.bootstraps(), {});
    ws_sink_begin_txn(sink.get(), 0x10);
    char errmsg[WS_ERRMSG_SIZE] = "";
    const uint8_t key[] = {'k'};
    const uint8_t value[] = {'v'};
    ASSERT_EQ(ws_sink_produce(sink.get(), "app.public.t", nullptr, key, sizeof(key), nullptr, 0,
                              0x10, 7, errmsg),
              WS_PRODUCE_QUEUE_FULL)
        << "the first event of a topic waits for its creation: " << errmsg;
    ASSERT_TRUE(sink.poll_until([&] {
        return ws_sink_produce(sink.get(), "app.public.t", nullptr, key, sizeof(key), nullptr, 0,
                               0x10, 7, errmsg) != WS_PRODUCE_QUEUE_FULL;
    }));
    ASSERT_EQ(ws_sink_produce(sink.get(), "app.public.t", nullptr, nullptr, 0, value, sizeof(value),
                              0x10, 7, errmsg),
              WS_PRODUCE_OK)
        << errmsg;
    ws_sink_end_txn(sink.get(), 0x10);
    ASSERT_TRUE(sink.deliver_all());
    EXPECT_EQ(sink.watermark(), 0x10u);
    EXPECT_EQ(sink.stats().events_acked, 2u);
}

/* An event "event-<seq>:" padded to `size` bytes, so that sequence_of still reads it. */
Event large_event(const std::string &topic, const std::string &key, int seq, size_t size)
{
    std::string value = "event-" + std::to_string(seq) + ":";
    value.reserve(size);
    for (size_t i = value.size(); i < size; ++i)
        value.push_back(static_cast<char>('a' + (i * 7919) % 26));
    return Event{topic, key, value};
}

TEST(SinkKafka, EventLargerThanKafkasDefaultsAndBatchSizeIsDelivered)
{
    /* 5 MB: above librdkafka's and Kafka's default 1 MB and walship's batch.size. (Alone
     * in its topic: the mock cluster drops a partition's older batches once its log
     * outgrows a small size limit; test_stream_large_rows.py has it among other events.) */
    MockCluster cluster(1);
    SinkUnderTest sink(cluster.bootstraps(), {});
    Transaction big{0x2000, 2, {large_event("app.public.docs", "k", 1, 5 * 1024 * 1024)}};
    ASSERT_TRUE(sink.hand_over({big}));
    ASSERT_TRUE(sink.deliver_all()) << sink.last_poll_error();
    EXPECT_EQ(sink.watermark(), big.commit_lsn);
    expect_delivered_exactly_once(cluster.bootstraps(), "app.public.docs", {big});
}

TEST(SinkKafka, EventLargerThanMessageMaxBytesFailsNamingTheSetting)
{
    MockCluster cluster(1);
    SinkUnderTest sink(cluster.bootstraps(), {{"message.max.bytes", "100000"}});
    Transaction txn{0x1000, 1, {large_event("app.public.docs", "k", 0, 200000)}};
    ws_sink_begin_txn(sink.get(), txn.commit_lsn);
    EXPECT_EQ(sink.produce(txn.events[0], txn), WS_PRODUCE_FAILED);
    ws_sink_end_txn(sink.get(), txn.commit_lsn);
    EXPECT_NE(sink.last_produce_error().find("MSG_SIZE_TOO_LARGE"), std::string::npos)
        << sink.last_produce_error();
    EXPECT_NE(sink.last_produce_error().find("\"message.max.bytes\""), std::string::npos)
        << sink.last_produce_error();
    EXPECT_EQ(sink.poll(10), WS_ERROR);
    EXPECT_EQ(sink.watermark(), 0u);
}

TEST(SinkKafka, EventLargerThanTheQueueFailsInsteadOfWaitingForever)
{
    /* librdkafka would answer QUEUE_FULL to it for ever, even with an empty queue. */
    MockCluster cluster(1);
    SinkUnderTest sink(cluster.bootstraps(), {{"queue.buffering.max.kbytes", "1024"}});
    Transaction txn{0x1000, 1, {large_event("app.public.docs", "k", 0, 2 * 1024 * 1024)}};
    ws_sink_begin_txn(sink.get(), txn.commit_lsn);
    EXPECT_EQ(sink.produce(txn.events[0], txn), WS_PRODUCE_FAILED);
    ws_sink_end_txn(sink.get(), txn.commit_lsn);
    EXPECT_NE(sink.last_produce_error().find("\"queue.buffering.max.kbytes\" (1024)"),
              std::string::npos)
        << sink.last_produce_error();
    EXPECT_EQ(sink.poll(10), WS_ERROR);
    EXPECT_EQ(sink.watermark(), 0u);
}

TEST(SinkKafka, DestroyDoesNotWaitForAClusterThatIsDown)
{
    MockCluster cluster(1);
    SinkUnderTest sink(cluster.bootstraps(), {});
    std::vector<Transaction> before = workload(1, 1, {"app.public.orders"}, 1, 0x1000);
    ASSERT_TRUE(sink.hand_over(before));
    ASSERT_TRUE(sink.deliver_all());
    ASSERT_EQ(rd_kafka_mock_broker_set_down(cluster.get(), -1), RD_KAFKA_RESP_ERR_NO_ERROR);
    std::vector<Transaction> during = workload(5, 5, {"app.public.orders"}, 1, 0x2000, 100);
    ASSERT_TRUE(sink.hand_over(during));
    char errmsg[WS_ERRMSG_SIZE] = "";
    EXPECT_EQ(ws_sink_flush(sink.get(), 200, errmsg), WS_ERROR);
    EXPECT_NE(std::string(errmsg).find("still in flight"), std::string::npos) << errmsg;
    const Clock::time_point start = Clock::now();
    sink.destroy();
    EXPECT_LT(Clock::now() - start, std::chrono::seconds(10));
}

TEST(SinkKafka, TopicCreationWaitsWhileTheClusterIsDown)
{
    /* Kafka unreachable when a topic is first seen: creation is retried, produce says
     * QUEUE_FULL (backpressure) for as long as it lasts, whatever the budget. */
    MockCluster cluster(1);
    ASSERT_EQ(rd_kafka_mock_broker_set_down(cluster.get(), -1), RD_KAFKA_RESP_ERR_NO_ERROR);
    SinkUnderTest sink(cluster.bootstraps(), fast_reconnect());
    Transaction txn{0x10, 1, {Event{"app.public.orders", "k", "event-0"}}};
    ws_sink_begin_txn(sink.get(), txn.commit_lsn);
    char errmsg[WS_ERRMSG_SIZE] = "";
    const Clock::time_point until = Clock::now() + std::chrono::milliseconds(2500);
    sink.poll_until([&] {
        EXPECT_EQ(ws_sink_produce(sink.get(), "app.public.orders", nullptr, nullptr, 0, nullptr, 0,
                                  txn.commit_lsn, txn.xid, errmsg),
                  WS_PRODUCE_QUEUE_FULL);
        return Clock::now() >= until;
    });
    EXPECT_NE(std::string(errmsg).find("\"app.public.orders\""), std::string::npos) << errmsg;
    EXPECT_TRUE(sink.has_log("trying again"));

    ASSERT_EQ(rd_kafka_mock_broker_set_up(cluster.get(), -1), RD_KAFKA_RESP_ERR_NO_ERROR);
    ASSERT_EQ(sink.produce(txn.events[0], txn), WS_PRODUCE_OK) << sink.last_produce_error();
    ws_sink_end_txn(sink.get(), txn.commit_lsn);
    ASSERT_TRUE(sink.deliver_all());
    EXPECT_EQ(sink.watermark(), txn.commit_lsn);
    expect_delivered_exactly_once(cluster.bootstraps(), "app.public.orders", {txn});
}

/*
 * Against a real broker, when WALSHIP_TEST_KAFKA names one (tests/kafka/kafka.sh start
 * prints its address): what the mock cannot do, topic creation.
 */
namespace
{

std::string real_kafka()
{
    const char *bootstrap = std::getenv("WALSHIP_TEST_KAFKA");
    return bootstrap != nullptr ? bootstrap : "";
}

std::string unique_topic(const char *table)
{
    return std::string("walship_test.public.") + table + "_" +
           std::to_string(std::chrono::system_clock::now().time_since_epoch().count());
}

} // namespace

TEST(SinkRealKafka, CreatesTopicsWithTheConfiguredPartitions)
{
    const std::string bootstrap = real_kafka();
    if (bootstrap.empty())
        GTEST_SKIP() << "set WALSHIP_TEST_KAFKA to a broker's address";
    const std::string topic = unique_topic("orders");
    std::vector<Transaction> txns = workload(20, 6, {topic}, 5, 0x1000000);
    {
        SinkUnderTest sink(bootstrap, {}, Cluster::Real, 3, 1);
        ASSERT_TRUE(sink.hand_over(txns));
        ASSERT_TRUE(sink.deliver_all());
        EXPECT_EQ(sink.watermark(), txns.back().commit_lsn);
        EXPECT_TRUE(sink.has_log("created Kafka topic \"" + topic + "\" (partitions: 3,"));
    }
    /* A second run finds the topic there: no creation, no warning. */
    std::vector<Transaction> more = workload(5, 3, {topic}, 5, 0x2000000, 1000);
    {
        SinkUnderTest sink(bootstrap, {}, Cluster::Real, 3, 1);
        ASSERT_TRUE(sink.hand_over(more));
        ASSERT_TRUE(sink.deliver_all());
        EXPECT_FALSE(sink.has_log("could not create"));
        EXPECT_FALSE(sink.has_log("created Kafka topic"));
    }
    std::vector<Transaction> all = txns;
    all.insert(all.end(), more.begin(), more.end());
    int64_t stored = 0;
    int partitions = 0;
    read_topic(bootstrap, topic, &stored, &partitions);
    EXPECT_EQ(partitions, 3);
    expect_delivered_exactly_once(bootstrap, topic, all);
}

TEST(SinkRealKafka, ImpossibleReplicationFactorIsRefusedWithTheBrokersReason)
{
    const std::string bootstrap = real_kafka();
    if (bootstrap.empty())
        GTEST_SKIP() << "set WALSHIP_TEST_KAFKA to a broker's address";
    SinkUnderTest sink(bootstrap, {}, Cluster::Real, 1, 7);
    const std::string topic = unique_topic("items");
    Transaction txn{0x10, 1, {Event{topic, "k", "event-0"}}};
    ws_sink_begin_txn(sink.get(), txn.commit_lsn);
    EXPECT_EQ(sink.produce(txn.events[0], txn), WS_PRODUCE_FAILED);
    EXPECT_NE(sink.last_produce_error().find("INVALID_REPLICATION_FACTOR"), std::string::npos)
        << sink.last_produce_error();
    EXPECT_NE(sink.last_produce_error().find(topic), std::string::npos)
        << sink.last_produce_error();
    EXPECT_EQ(sink.poll(0), WS_ERROR);
}

TEST(SinkRealKafka, BrokerCrashLosesNothingAndDuplicatesNothing)
{
    /* kill -9 of the broker with batches in flight, then a restart on its data: the
     * producer retries what was unacknowledged; the broker drops what it had already
     * written (same producer id and sequence). The broker is killed, so it must be one
     * of its own: WALSHIP_TEST_KAFKA_CRASH_DIR names its tests/kafka/kafka.sh directory. */
    const char *dir = std::getenv("WALSHIP_TEST_KAFKA_CRASH_DIR");
    if (dir == nullptr)
        GTEST_SKIP() << "set WALSHIP_TEST_KAFKA_CRASH_DIR to a broker started for this test";
    std::string bootstrap;
    if (FILE *file = std::fopen((std::string(dir) + "/bootstrap").c_str(), "r")) {
        char line[256] = "";
        if (std::fgets(line, sizeof(line), file) != nullptr)
            bootstrap = std::string(line).substr(0, std::string(line).find_first_of("\r\n"));
        std::fclose(file);
    }
    ASSERT_FALSE(bootstrap.empty()) << "no bootstrap file in " << dir;
    std::string script = __FILE__;
    script = script.substr(0, script.rfind("/unit/")) + "/kafka/kafka.sh";
    const std::string topic = unique_topic("crash");
    SinkUnderTest sink(bootstrap, fast_reconnect(), Cluster::Real, 3, 1);

    std::vector<Transaction> before = workload(300, 20, {topic}, 50, 0x1000000);
    ASSERT_TRUE(sink.hand_over(before));
    ASSERT_EQ(std::system(("'" + script + "' kill '" + dir + "' >/dev/null").c_str()), 0);
    std::vector<Transaction> during = workload(300, 20, {topic}, 50, 0x2000000, 100000);
    ASSERT_TRUE(sink.hand_over(during));
    const uint64_t confirmed_while_down = sink.watermark();
    EXPECT_LT(confirmed_while_down, during.back().commit_lsn);
    ASSERT_EQ(std::system(("'" + script + "' start '" + dir + "' >/dev/null").c_str()), 0);
    ASSERT_TRUE(sink.deliver_all());
    EXPECT_EQ(sink.watermark(), during.back().commit_lsn);

    std::vector<Transaction> all = before;
    all.insert(all.end(), during.begin(), during.end());
    expect_delivered_exactly_once(bootstrap, topic, all);
}
