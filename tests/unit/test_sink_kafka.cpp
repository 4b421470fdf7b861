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
#include "sink_test_support.hpp"

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

using namespace walship_sink_test;

namespace
{

constexpr int16_t kProduceApiKey = 0; /* Kafka protocol: ProduceRequest */

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
    ws_error flush_error{};
    EXPECT_EQ(ws_sink_flush(sink.get(), 1000, &flush_error), WS_OK) << flush_error.message;

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
    ws_error err{};
    EXPECT_EQ(produce_parts(sink.get(), "app.public.payments", nullptr, nullptr, 0, nullptr, 0,
                            next.commit_lsn, next.xid, &err),
              WS_PRODUCE_OK)
        << err.message;
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
    ws_error error{};
    ASSERT_TRUE(sink.poll_until([&] { return ws_sink_last_error(sink.get(), &error); }))
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
    EXPECT_FALSE(ws_sink_last_error(sink.get(), &error))
        << "cleared by the deliveries, still: " << error.message;

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
    ws_error err{};
    EXPECT_EQ(produce_parts(sink.get(), "app.public.orders", nullptr, nullptr, 0, nullptr, 0,
                            third.commit_lsn, third.xid, &err),
              WS_PRODUCE_FAILED);
    ws_sink_end_txn(sink.get(), third.commit_lsn);
    EXPECT_EQ(ws_sink_flush(sink.get(), 5000, &err), WS_ERROR);
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
    ws_error err{};
    EXPECT_EQ(ws_sink_flush(sink.get(), 2000, &err), WS_ERROR);
    EXPECT_EQ(sink.watermark(), before.back().commit_lsn);
}

TEST(SinkKafka, EventsOutsideTheirTransactionAreABug)
{
    MockCluster cluster(1);
    SinkUnderTest sink(cluster.bootstraps(), {});
    ws_error err{};
    EXPECT_EQ(
        produce_parts(sink.get(), "app.public.t", nullptr, nullptr, 0, nullptr, 0, 0x10, 1, &err),
        WS_PRODUCE_FAILED);
    EXPECT_NE(std::string(err.message).find("outside a transaction"), std::string::npos)
        << err.message;
    EXPECT_EQ(sink.poll(0), WS_ERROR);
    EXPECT_NE(sink.last_poll_error().find("walship bug"), std::string::npos);

    SinkUnderTest other(cluster.bootstraps(), {});
    ws_sink_begin_txn(other.get(), 0x20);
    EXPECT_EQ(
        produce_parts(other.get(), "app.public.t", nullptr, nullptr, 0, nullptr, 0, 0x10, 1, &err),
        WS_PRODUCE_FAILED);
    EXPECT_NE(std::string(err.message).find("0/20"), std::string::npos) << err.message;
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
    ws_error err{};
    const uint8_t key[] = {'k'};
    const uint8_t value[] = {'v'};
    ASSERT_EQ(produce_parts(sink.get(), "app.public.t", nullptr, key, sizeof(key), nullptr, 0, 0x10,
                            7, &err),
              WS_PRODUCE_TOPIC_PENDING)
        << "the first event of a topic waits for its creation: " << err.message;
    ASSERT_TRUE(sink.poll_until([&] {
        return produce_parts(sink.get(), "app.public.t", nullptr, key, sizeof(key), nullptr, 0,
                             0x10, 7, &err) != WS_PRODUCE_TOPIC_PENDING;
    }));
    ASSERT_EQ(produce_parts(sink.get(), "app.public.t", nullptr, nullptr, 0, value, sizeof(value),
                            0x10, 7, &err),
              WS_PRODUCE_OK)
        << err.message;
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
    ws_error err{};
    EXPECT_EQ(ws_sink_flush(sink.get(), 200, &err), WS_ERROR);
    EXPECT_NE(std::string(err.message).find("still in flight"), std::string::npos) << err.message;
    const Clock::time_point start = Clock::now();
    sink.destroy();
    EXPECT_LT(Clock::now() - start, std::chrono::seconds(10));
}

TEST(SinkKafka, TopicCreationWaitsWhileTheClusterIsDown)
{
    /* Kafka unreachable when a topic is first seen: creation is retried, produce says
     * TOPIC_PENDING (backpressure) for as long as it lasts, whatever the budget. */
    MockCluster cluster(1);
    ASSERT_EQ(rd_kafka_mock_broker_set_down(cluster.get(), -1), RD_KAFKA_RESP_ERR_NO_ERROR);
    SinkUnderTest sink(cluster.bootstraps(), fast_reconnect());
    Transaction txn{0x10, 1, {Event{"app.public.orders", "k", "event-0"}}};
    ws_sink_begin_txn(sink.get(), txn.commit_lsn);
    ws_error err{};
    const Clock::time_point until = Clock::now() + std::chrono::milliseconds(2500);
    sink.poll_until([&] {
        EXPECT_EQ(produce_parts(sink.get(), "app.public.orders", nullptr, nullptr, 0, nullptr, 0,
                                txn.commit_lsn, txn.xid, &err),
                  WS_PRODUCE_TOPIC_PENDING);
        return Clock::now() >= until;
    });
    EXPECT_NE(std::string(err.message).find("\"app.public.orders\""), std::string::npos)
        << err.message;
    EXPECT_TRUE(sink.has_log("trying again"));

    ASSERT_EQ(rd_kafka_mock_broker_set_up(cluster.get(), -1), RD_KAFKA_RESP_ERR_NO_ERROR);
    ASSERT_EQ(sink.produce(txn.events[0], txn), WS_PRODUCE_OK) << sink.last_produce_error();
    ws_sink_end_txn(sink.get(), txn.commit_lsn);
    ASSERT_TRUE(sink.deliver_all());
    EXPECT_EQ(sink.watermark(), txn.commit_lsn);
    expect_delivered_exactly_once(cluster.bootstraps(), "app.public.orders", {txn});
}
