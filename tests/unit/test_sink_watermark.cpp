/*
 * test_sink_watermark.cpp: the LSN watermark (extension/sink/watermark.hpp) on its own, without
 * Kafka: what the slot may be confirmed up to, for every order in which Kafka answers.
 */
#include "watermark.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

using walship::DeliveryWatermark;
using walship::format_lsn;

namespace
{

/* Begins, produces `events` events and ends a transaction; returns its id. */
DeliveryWatermark::TransactionId handed_over(DeliveryWatermark &watermark, uint64_t commit_lsn,
                                             int events)
{
    std::string why;
    EXPECT_TRUE(watermark.begin(commit_lsn, why)) << why;
    DeliveryWatermark::TransactionId id = watermark.open_transaction();
    for (int i = 0; i < events; ++i)
        watermark.event_produced();
    EXPECT_TRUE(watermark.end(commit_lsn, why)) << why;
    return id;
}

} // namespace

TEST(SinkWatermarkLsn, PrintedAsPostgresPrintsPgLsn)
{
    EXPECT_EQ(format_lsn(0), "0/0");
    EXPECT_EQ(format_lsn(0x16B374D848ULL), "16/B374D848");
    EXPECT_EQ(format_lsn(0x1000000ULL), "0/1000000");
    EXPECT_EQ(format_lsn(UINT64_MAX), "FFFFFFFF/FFFFFFFF");
}

TEST(SinkWatermark, StartsAtZeroAndIdle)
{
    DeliveryWatermark watermark;
    EXPECT_EQ(watermark.watermark(), 0u);
    EXPECT_TRUE(watermark.idle());
    EXPECT_EQ(watermark.in_flight(), 0u);
    EXPECT_FALSE(watermark.failed());
}

TEST(SinkWatermark, ZeroEventTransactionAdvancesAsSoonAsItEnds)
{
    DeliveryWatermark watermark;
    std::string why;
    ASSERT_TRUE(watermark.begin(100, why));
    EXPECT_FALSE(watermark.idle());
    EXPECT_EQ(watermark.watermark(), 0u);
    ASSERT_TRUE(watermark.end(100, why));
    EXPECT_EQ(watermark.watermark(), 100u);
    EXPECT_TRUE(watermark.idle());
}

TEST(SinkWatermark, OpenTransactionIsNotConfirmedEvenWhenItsEventsAreAcked)
{
    DeliveryWatermark watermark;
    std::string why;
    ASSERT_TRUE(watermark.begin(100, why));
    DeliveryWatermark::TransactionId id = watermark.open_transaction();
    watermark.event_produced();
    watermark.event_produced();
    ASSERT_TRUE(watermark.event_acked(id));
    ASSERT_TRUE(watermark.event_acked(id));
    EXPECT_EQ(watermark.watermark(), 0u) << "more events may still come";
    ASSERT_TRUE(watermark.end(100, why));
    EXPECT_EQ(watermark.watermark(), 100u);
}

TEST(SinkWatermark, WaitsForEveryEventOfTheTransaction)
{
    DeliveryWatermark watermark;
    DeliveryWatermark::TransactionId id = handed_over(watermark, 100, 3);
    EXPECT_EQ(watermark.in_flight(), 3u);
    ASSERT_TRUE(watermark.event_acked(id));
    ASSERT_TRUE(watermark.event_acked(id));
    EXPECT_EQ(watermark.watermark(), 0u);
    ASSERT_TRUE(watermark.event_acked(id));
    EXPECT_EQ(watermark.watermark(), 100u);
    EXPECT_EQ(watermark.in_flight(), 0u);
    EXPECT_TRUE(watermark.idle());
}

TEST(SinkWatermark, LaterTransactionAckedFirstWaitsForEarlierOnes)
{
    DeliveryWatermark watermark;
    DeliveryWatermark::TransactionId first = handed_over(watermark, 100, 1);
    DeliveryWatermark::TransactionId second = handed_over(watermark, 200, 1);
    DeliveryWatermark::TransactionId third = handed_over(watermark, 300, 1);
    ASSERT_TRUE(watermark.event_acked(third));
    ASSERT_TRUE(watermark.event_acked(second));
    EXPECT_EQ(watermark.watermark(), 0u);
    ASSERT_TRUE(watermark.event_acked(first));
    EXPECT_EQ(watermark.watermark(), 300u) << "all three complete at once";
    EXPECT_TRUE(watermark.idle());
}

TEST(SinkWatermark, ZeroEventTransactionWaitsForEarlierOnesThenMovesTheWatermark)
{
    DeliveryWatermark watermark;
    DeliveryWatermark::TransactionId first = handed_over(watermark, 100, 2);
    handed_over(watermark, 200, 0);
    handed_over(watermark, 300, 0);
    EXPECT_EQ(watermark.watermark(), 0u);
    ASSERT_TRUE(watermark.event_acked(first));
    EXPECT_EQ(watermark.watermark(), 0u);
    ASSERT_TRUE(watermark.event_acked(first));
    EXPECT_EQ(watermark.watermark(), 300u);
}

TEST(SinkWatermark, FailedEventStopsTheWatermarkInFrontOfItsTransactionForGood)
{
    DeliveryWatermark watermark;
    DeliveryWatermark::TransactionId first = handed_over(watermark, 100, 1);
    DeliveryWatermark::TransactionId second = handed_over(watermark, 200, 2);
    DeliveryWatermark::TransactionId third = handed_over(watermark, 300, 1);
    ASSERT_TRUE(watermark.event_acked(first));
    EXPECT_EQ(watermark.watermark(), 100u);
    ASSERT_TRUE(watermark.event_failed(second));
    EXPECT_TRUE(watermark.failed());
    ASSERT_TRUE(watermark.event_acked(second));
    ASSERT_TRUE(watermark.event_acked(third));
    handed_over(watermark, 400, 0);
    EXPECT_EQ(watermark.watermark(), 100u);
    EXPECT_FALSE(watermark.idle());
    EXPECT_EQ(watermark.in_flight(), 0u);
}

TEST(SinkWatermark, EventLostBeforeKafkaFailsTheOpenTransaction)
{
    DeliveryWatermark watermark;
    std::string why;
    ASSERT_TRUE(watermark.begin(100, why));
    watermark.fail_open_transaction();
    ASSERT_TRUE(watermark.end(100, why));
    EXPECT_EQ(watermark.watermark(), 0u);
    EXPECT_TRUE(watermark.failed());
    handed_over(watermark, 200, 0);
    EXPECT_EQ(watermark.watermark(), 0u);
}

TEST(SinkWatermark, HaltFreezesTheWatermark)
{
    DeliveryWatermark watermark;
    DeliveryWatermark::TransactionId first = handed_over(watermark, 100, 1);
    DeliveryWatermark::TransactionId second = handed_over(watermark, 200, 1);
    ASSERT_TRUE(watermark.event_acked(first));
    EXPECT_EQ(watermark.watermark(), 100u);
    watermark.halt();
    ASSERT_TRUE(watermark.event_acked(second));
    handed_over(watermark, 300, 0);
    EXPECT_EQ(watermark.watermark(), 100u);
    EXPECT_TRUE(watermark.failed());
}

TEST(SinkWatermark, RefusesTransactionsOutOfCommitOrder)
{
    DeliveryWatermark watermark;
    std::string why;
    ASSERT_TRUE(watermark.begin(200, why));
    EXPECT_FALSE(watermark.begin(300, why)) << "one is still open";
    EXPECT_NE(why.find("still open"), std::string::npos) << why;
    EXPECT_FALSE(watermark.end(250, why));
    EXPECT_NE(why.find("0/C8"), std::string::npos) << why;
    ASSERT_TRUE(watermark.end(200, why));
    EXPECT_FALSE(watermark.end(200, why)) << "none is open";
    EXPECT_FALSE(watermark.begin(100, why));
    EXPECT_NE(why.find("commit order"), std::string::npos) << why;
    EXPECT_TRUE(watermark.begin(200, why)) << "the same commit LSN again is harmless";
}

TEST(SinkWatermark, ReportsForUnknownTransactionsAreDetected)
{
    DeliveryWatermark watermark;
    DeliveryWatermark::TransactionId first = handed_over(watermark, 100, 1);
    EXPECT_FALSE(watermark.event_acked(first + 1)) << "no such transaction yet";
    ASSERT_TRUE(watermark.event_acked(first));
    EXPECT_FALSE(watermark.event_acked(first)) << "already below the watermark";
    DeliveryWatermark::TransactionId second = handed_over(watermark, 200, 1);
    DeliveryWatermark::TransactionId third = handed_over(watermark, 300, 1);
    ASSERT_TRUE(watermark.event_acked(third));
    EXPECT_FALSE(watermark.event_acked(third)) << "more reports than events";
    EXPECT_FALSE(watermark.event_failed(third));
    ASSERT_TRUE(watermark.event_acked(second));
    EXPECT_EQ(watermark.watermark(), 300u);
}

/*
 * Property: whatever the interleaving of hand-over and acknowledgements, the watermark
 * equals what a brute-force model says: the commit LSN of the last transaction of the
 * longest prefix that is ended, fully acknowledged and not failed.
 */
namespace
{

struct ModelTransaction {
    uint64_t commit_lsn;
    int produced = 0;
    int acked = 0;
    bool ended = false;
    bool failed = false;
};

uint64_t model_watermark(const std::vector<ModelTransaction> &txns)
{
    uint64_t watermark = 0;
    for (const ModelTransaction &txn : txns) {
        if (!txn.ended || txn.failed || txn.acked != txn.produced)
            break;
        watermark = txn.commit_lsn;
    }
    return watermark;
}

struct Outstanding {
    DeliveryWatermark::TransactionId id;
    size_t index;
};

void run_random_history(uint64_t seed, bool with_failures)
{
    std::mt19937_64 random(seed);
    auto chance = [&](int percent) { return static_cast<int>(random() % 100) < percent; };
    DeliveryWatermark watermark;
    std::vector<ModelTransaction> txns;
    std::vector<Outstanding> outstanding;
    uint64_t next_lsn = 0x1000;
    uint64_t previous = 0;
    const int transactions = 1 + static_cast<int>(random() % 60);
    bool failed = false;
    std::string why;

    auto check = [&](const char *after) {
        ASSERT_EQ(watermark.watermark(), model_watermark(txns))
            << "seed " << seed << " after " << after;
        ASSERT_GE(watermark.watermark(), previous) << "seed " << seed << ": went backwards";
        previous = watermark.watermark();
        ASSERT_EQ(watermark.in_flight(), outstanding.size()) << "seed " << seed;
        ASSERT_EQ(watermark.failed(), failed) << "seed " << seed;
    };
    auto report_one = [&]() {
        size_t pick = random() % outstanding.size();
        Outstanding event = outstanding[pick];
        outstanding.erase(outstanding.begin() + static_cast<std::ptrdiff_t>(pick));
        if (with_failures && chance(3)) {
            ASSERT_TRUE(watermark.event_failed(event.id));
            txns[event.index].failed = true;
            failed = true;
        } else {
            ASSERT_TRUE(watermark.event_acked(event.id));
        }
        ++txns[event.index].acked; /* reported, one way or the other */
        check("a delivery report");
    };

    for (int t = 0; t < transactions; ++t) {
        next_lsn += 1 + random() % 5000;
        ASSERT_TRUE(watermark.begin(next_lsn, why)) << why;
        txns.push_back(ModelTransaction{next_lsn});
        const size_t index = txns.size() - 1;
        /* Often empty: filtered tables and empty transactions are common. */
        const int events = chance(30) ? 0 : static_cast<int>(random() % 8);
        for (int e = 0; e < events; ++e) {
            watermark.event_produced();
            outstanding.push_back(Outstanding{watermark.open_transaction(), index});
            ++txns[index].produced;
            check("an event");
            /* Kafka answers while the transaction is still being handed over. */
            while (!outstanding.empty() && chance(35))
                report_one();
        }
        ASSERT_TRUE(watermark.end(next_lsn, why)) << why;
        txns[index].ended = true;
        check("end of transaction");
        while (!outstanding.empty() && chance(40))
            report_one();
    }
    while (!outstanding.empty())
        report_one();

    if (!failed) {
        EXPECT_EQ(watermark.watermark(), txns.back().commit_lsn) << "seed " << seed;
        EXPECT_TRUE(watermark.idle()) << "seed " << seed;
    } else {
        size_t first_failed = 0;
        while (!txns[first_failed].failed)
            ++first_failed;
        EXPECT_LT(watermark.watermark(), txns[first_failed].commit_lsn) << "seed " << seed;
        EXPECT_EQ(watermark.watermark(), first_failed == 0 ? 0 : txns[first_failed - 1].commit_lsn)
            << "seed " << seed;
        EXPECT_FALSE(watermark.idle()) << "seed " << seed;
    }
}

} // namespace

TEST(SinkWatermarkProperty, RandomAckOrdersMatchTheModel)
{
    for (uint64_t seed = 1; seed <= 2000; ++seed) {
        run_random_history(seed, false);
        if (::testing::Test::HasFatalFailure())
            return;
    }
}

TEST(SinkWatermarkProperty, RandomFailuresNeverLetTheWatermarkPass)
{
    for (uint64_t seed = 1; seed <= 2000; ++seed) {
        run_random_history(seed * 7919, true);
        if (::testing::Test::HasFatalFailure())
            return;
    }
}
