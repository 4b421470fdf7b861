/*
 * sink.cpp: the C boundary of the Kafka sink (walship_sink.h).
 *
 * The sink is split along its seams: properties.cpp (walship's producer defaults, the
 * property policy and the secrets: pure functions), producer_conf.cpp (properties
 * through librdkafka's parser), topics.cpp (the topic state machine and CreateTopics),
 * producer.cpp (the producer, librdkafka's callbacks and delivery tracking) and
 * watermark.hpp (the LSN watermark). Here are only the extern "C" functions: each runs
 * its body in the one guard of boundary.hpp, so no exception reaches C, and whatever a
 * call that may fail the stream throws is recorded as the sink's failure, the first of
 * which every later call reports.
 */
#include "core_error.hpp" /* first: the guard that no PostgreSQL header got here */

#include "walship_sink.h"

#include "boundary.hpp"
#include "producer.hpp"
#include "sink_internal.hpp"

#include <memory>

using walship::guarded;
using walship::set_error;

struct ws_sink : walship::Producer {
};

namespace
{

ws_status no_sink(ws_error *err)
{
    set_error(err, WS_ERR_INTERNAL, "no Kafka sink");
    return WS_ERROR;
}

/*
 * Runs body on sink; what it throws becomes the sink's failure (unless one came first).
 * WS_ERROR with the sink's failure in err when it has one, whoever recorded it.
 */
template <typename Body> ws_status failing(ws_sink *sink, ws_error *err, Body &&body) noexcept
{
    if (sink == nullptr)
        return no_sink(err);
    ws_error thrown;
    if (guarded(&thrown, body) != WS_OK)
        sink->record_failure(thrown);
    if (!sink->failed())
        return WS_OK;
    sink->report_failure(err);
    return WS_ERROR;
}

} // namespace

rd_kafka_t *walship::sink_kafka_handle(ws_sink *sink)
{
    return sink->kafka();
}

void walship::sink_set_topic_creation_limits(ws_sink *sink, int request_timeout_ms, int budget_ms)
{
    sink->topics().set_creation_limits(request_timeout_ms, budget_ms);
}

extern "C" {

ws_sink *ws_sink_create(const ws_sink_config *config, ws_error *err)
{
    ws_sink *created = nullptr;
    guarded(err, [&] {
        if (config == nullptr)
            throw walship::CoreError(WS_ERR_INTERNAL, "no Kafka sink configuration");
        auto sink = std::make_unique<ws_sink>();
        sink->open(*config);
        created = sink.release();
    });
    return created;
}

ws_status ws_sink_check_config(const ws_sink_config *config, ws_error *err)
{
    ws_sink *sink = ws_sink_create(config, err);
    if (sink == nullptr)
        return WS_ERROR;
    ws_sink_destroy(sink);
    return WS_OK;
}

void ws_sink_destroy(ws_sink *sink)
{
    /* A destructor that throws would terminate anyway; nothing to report to. */
    guarded(nullptr, [&] { delete sink; });
}

void ws_sink_begin_txn(ws_sink *sink, uint64_t commit_lsn)
{
    failing(sink, nullptr, [&] { sink->begin_txn(commit_lsn); });
}

void ws_sink_end_txn(ws_sink *sink, uint64_t commit_lsn)
{
    failing(sink, nullptr, [&] { sink->end_txn(commit_lsn); });
}

ws_produce_result ws_sink_produce(ws_sink *sink, const char *topic_name, const char *table,
                                  const ws_record *record, uint64_t commit_lsn, uint32_t xid,
                                  ws_error *err)
{
    static const ws_record kEmpty{};
    if (sink == nullptr) {
        no_sink(err);
        return WS_PRODUCE_FAILED;
    }
    if (sink->failed()) {
        sink->report_failure(err);
        return WS_PRODUCE_FAILED;
    }
    ws_produce_result result = WS_PRODUCE_FAILED;
    ws_error thrown;
    if (guarded(&thrown, [&] {
            result = sink->produce(topic_name, table, record != nullptr ? *record : kEmpty,
                                   commit_lsn, xid, err);
        }) == WS_OK)
        return result;
    /* The one failure path of an event: its transaction never completes. */
    sink->fail_open_transaction(thrown);
    sink->report_failure(err);
    return WS_PRODUCE_FAILED;
}

ws_status ws_sink_poll(ws_sink *sink, int timeout_ms, ws_error *err)
{
    return failing(sink, err, [&] { sink->poll(timeout_ms); });
}

ws_status ws_sink_flush(ws_sink *sink, int timeout_ms, ws_error *err)
{
    if (sink == nullptr)
        return no_sink(err);
    /* Events still in flight are no failure of the stream: the next run sends them. */
    const ws_status status = guarded(err, [&] { sink->flush(timeout_ms); });
    if (!sink->failed())
        return status;
    sink->report_failure(err);
    return WS_ERROR;
}

uint64_t ws_sink_watermark(const ws_sink *sink)
{
    return sink != nullptr ? sink->confirmable() : 0;
}

bool ws_sink_idle(const ws_sink *sink)
{
    return sink == nullptr || sink->idle();
}

ws_start_result ws_sink_start(ws_sink *sink, int timeout_ms, ws_sink_position *position,
                              ws_error *err)
{
    ws_start_result result = WS_START_FAILED;
    if (failing(sink, err, [&] { result = sink->start(timeout_ms, position, err); }) != WS_OK)
        return WS_START_FAILED;
    return result;
}

void ws_sink_set_caught_up(ws_sink *sink, bool caught_up)
{
    if (sink != nullptr)
        sink->set_caught_up(caught_up);
}

void ws_sink_get_stats(const ws_sink *sink, ws_sink_stats *out)
{
    if (out != nullptr)
        *out = sink != nullptr ? sink->stats() : ws_sink_stats{};
}

bool ws_sink_last_error(const ws_sink *sink, ws_error *err)
{
    return sink != nullptr && sink->last_error(err);
}

bool ws_sink_next_log(ws_sink *sink, int *level, char *line, size_t linelen)
{
    if (sink == nullptr)
        return false;
    bool taken = false;
    guarded(nullptr, [&] {
        walship::LogLine next;
        if (!sink->logs().take(next))
            return;
        if (level != nullptr)
            *level = next.level;
        if (line != nullptr && linelen > 0)
            walship::copy_text(line, linelen, next.text);
        taken = true;
    });
    return taken;
}

} /* extern "C" */
