/*
 * test_sink_exactly_once.cpp: the exactly-once position record's format, and what an
 * exactly-once sink's producer is configured with (transactional.id, its timeouts, the
 * properties the policy lets through only then). Nothing connects: the transactions
 * themselves are tested against a real broker (tests/integration/test_exactly_once.py).
 */
#include "walship_sink.h"
#include "position_record.hpp"
#include "properties.hpp"
#include "sink_internal.hpp"
#include "sink_test_support.hpp"

#include <gtest/gtest.h>

#include <librdkafka/rdkafka.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace
{

using walship::parse_position_value;
using walship::position_value;
using walship::PositionRecord;

TEST(PositionRecord, RoundTrips)
{
    PositionRecord record;
    record.stream = "orders";
    record.database = "shop \"eu\"\n";
    record.system_identifier = 18446744073709551615ULL; /* beyond a double's precision */
    record.timeline = 4294967295U;
    record.commit_lsn = 0x1A2B3C4D5E6FULL;
    record.events = 120;
    record.time_us = 1764662400000000;
    const std::string value = position_value(record);
    EXPECT_NE(value.find("\"commit_lsn\":\"1A2B/3C4D5E6F\""), std::string::npos) << value;
    EXPECT_NE(value.find("\"system_identifier\":\"18446744073709551615\""), std::string::npos);
    PositionRecord back;
    std::string why;
    ASSERT_TRUE(parse_position_value(value, back, why)) << why;
    EXPECT_EQ(back.stream, record.stream);
    EXPECT_EQ(back.database, record.database);
    EXPECT_EQ(back.system_identifier, record.system_identifier);
    EXPECT_EQ(back.timeline, record.timeline);
    EXPECT_EQ(back.commit_lsn, record.commit_lsn);
    EXPECT_EQ(back.events, record.events);
    EXPECT_EQ(back.time_us, record.time_us);
}

TEST(PositionRecord, LaterMembersAndSpacesAreFine)
{
    PositionRecord back;
    std::string why;
    ASSERT_TRUE(parse_position_value(
        " { \"lsn\" : 42 , \"future\":\"x\", \"timeline\":1,\"system_identifier\":\"7\"}", back,
        why))
        << why;
    EXPECT_EQ(back.commit_lsn, 42U);
    EXPECT_EQ(back.system_identifier, 7U);
}

TEST(PositionRecord, WhatIsNotOneIsRefused)
{
    const char *const bad[] = {
        "",
        "[]",
        "{\"lsn\":1,\"timeline\":1}",                                 /* no system identifier */
        "{\"lsn\":\"1\",\"timeline\":1,\"system_identifier\":\"7\"}", /* lsn as text */
        "{\"lsn\":-1,\"timeline\":1,\"system_identifier\":\"7\"}",
        "{\"lsn\":1,\"timeline\":4294967296,\"system_identifier\":\"7\"}",
        "{\"lsn\":1,\"timeline\":1,\"system_identifier\":7}", /* a number loses digits */
        "{\"lsn\":1,\"timeline\":1,\"system_identifier\":\"7\"",
        "{\"lsn\":1,\"nested\":{},\"timeline\":1,\"system_identifier\":\"7\"}",
        "{\"lsn\":99999999999999999999,\"timeline\":1,\"system_identifier\":\"7\"}",
    };
    for (const char *value : bad) {
        PositionRecord back;
        std::string why;
        EXPECT_FALSE(parse_position_value(value, back, why)) << value;
        EXPECT_FALSE(why.empty()) << value;
    }
}

struct SinkDeleter {
    void operator()(ws_sink *sink) const
    {
        ws_sink_destroy(sink);
    }
};
using SinkPtr = std::unique_ptr<ws_sink, SinkDeleter>;
using walship_sink_test::Properties;

/* An exactly-once sink over properties; error is why it could not be created. */
SinkPtr exactly_once_sink(const Properties &properties, std::string &error,
                          bool exactly_once = true)
{
    walship_sink_test::SinkConfig sink_config("127.0.0.1:1", properties); /* nothing connects */
    ws_sink_config &config = sink_config.config;
    config.exactly_once = exactly_once;
    config.transactional_id = "walship.1.shop.orders";
    config.offsets_topic = "shop.walship.offsets";
    config.transaction_interval_ms = 50;
    config.transaction_max_events = 1000;
    config.stream_name = "orders";
    config.database_name = "shop";
    config.system_identifier = 1;
    config.timeline = 1;
    ws_error err{};
    SinkPtr sink(ws_sink_create(&config, &err));
    error = sink ? "" : err.message;
    return sink;
}

std::string effective(ws_sink *sink, const char *name)
{
    char value[512];
    size_t size = sizeof(value);
    const rd_kafka_conf_t *conf = rd_kafka_conf(walship::sink_kafka_handle(sink));
    if (rd_kafka_conf_get(conf, name, value, &size) != RD_KAFKA_CONF_OK)
        return "<unknown>";
    return value;
}

TEST(ExactlyOnceSink, DerivesItsTransactionalIdAndBoundsItsTimeouts)
{
    std::string error;
    SinkPtr sink = exactly_once_sink({}, error);
    ASSERT_TRUE(sink) << error;
    EXPECT_EQ(effective(sink.get(), "transactional.id"), "walship.1.shop.orders");
    EXPECT_EQ(effective(sink.get(), "transaction.timeout.ms"), "900000");
    /* not raised to the transaction timeout: a dead broker shows within a minute */
    EXPECT_EQ(effective(sink.get(), "socket.timeout.ms"), "60000");
    EXPECT_EQ(effective(sink.get(), "enable.idempotence"), "true");
}

TEST(ExactlyOnceSink, TakesTheStreamsTransactionalSettings)
{
    std::string error;
    SinkPtr sink = exactly_once_sink(
        {{"transactional.id", "mine"}, {"transaction.timeout.ms", "20000"}}, error);
    ASSERT_TRUE(sink) << error;
    EXPECT_EQ(effective(sink.get(), "transactional.id"), "mine");
    EXPECT_EQ(effective(sink.get(), "transaction.timeout.ms"), "20000");
    EXPECT_EQ(effective(sink.get(), "socket.timeout.ms"), "19900");
    /* librdkafka's own checks of them together still apply */
    EXPECT_FALSE(exactly_once_sink(
        {{"transaction.timeout.ms", "10000"}, {"socket.timeout.ms", "60000"}}, error));
    EXPECT_NE(error.find("socket.timeout.ms"), std::string::npos) << error;
    EXPECT_FALSE(exactly_once_sink({{"transaction.timeout.ms", "soon"}}, error));
    EXPECT_NE(error.find("transaction.timeout.ms"), std::string::npos) << error;
}

TEST(ExactlyOnceSink, TransactionalPropertiesNeedExactlyOnce)
{
    std::string error;
    EXPECT_FALSE(exactly_once_sink({{"transactional.id", "mine"}}, error, false));
    EXPECT_NE(error.find("can only be set with the stream option delivery = exactly_once"),
              std::string::npos)
        << error;
    EXPECT_FALSE(exactly_once_sink({{"transaction.timeout.ms", "20000"}}, error, false));
    EXPECT_NE(error.find("delivery = exactly_once"), std::string::npos) << error;
}

TEST(ExactlyOnceSink, StartsBeforeItsFirstTransaction)
{
    std::string error;
    SinkPtr sink = exactly_once_sink({}, error);
    ASSERT_TRUE(sink) << error;
    ws_sink_begin_txn(sink.get(), 100);
    ws_error err{};
    EXPECT_EQ(ws_sink_poll(sink.get(), 0, &err), WS_ERROR);
    EXPECT_NE(std::string(err.message).find("before ws_sink_start"), std::string::npos)
        << err.message;
}

TEST(ExactlyOnceSink, AtLeastOnceStartsAtOnce)
{
    std::string error;
    SinkPtr sink = exactly_once_sink({}, error, false);
    ASSERT_TRUE(sink) << error;
    ws_sink_position position;
    ws_error err{};
    EXPECT_EQ(ws_sink_start(sink.get(), 0, &position, &err), WS_START_DONE);
    EXPECT_FALSE(position.found);
}

TEST(ExactlyOnceSink, StartWaitsForABrokerThatIsNotThere)
{
    std::string error;
    SinkPtr sink = exactly_once_sink({}, error);
    ASSERT_TRUE(sink) << error;
    walship::sink_set_topic_creation_limits(sink.get(), 200, 200);
    ws_sink_position position;
    ws_error err{};
    EXPECT_EQ(ws_sink_start(sink.get(), 50, &position, &err), WS_START_PENDING);
    EXPECT_NE(std::string(err.message).find("shop.walship.offsets"), std::string::npos)
        << err.message;
}

} // namespace
