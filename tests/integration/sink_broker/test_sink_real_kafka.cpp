/*
 * test_sink_real_kafka.cpp: the Kafka sink against a real broker, what the mock cluster
 * cannot do: topic creation, a replication factor the broker refuses, a broker killed
 * mid-stream. The integration stage runs it (ctest label "broker") with a broker that the
 * test harness starts (scripts/test.sh); without one the tests skip, and a skipped test
 * fails that run.
 */
#include "sink_test_support.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

using namespace walship_sink_test;

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
    script = script.substr(0, script.rfind("/integration/")) + "/kafka/kafka.sh";
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
