/*
 * exactly_once.cpp: delivery = exactly_once (docs/streams.md, "Exactly once"), the Producer's
 * transactional half.
 *
 * Start (Producer::start, before the first event):
 *   1. the offsets topic exists (created compacted, with one partition, if missing);
 *   2. init_transactions: Kafka fences every earlier producer of the transactional id
 *      (a worker that is gone, or a zombie) and aborts its open transaction;
 *   3. the position is read back with a read_committed consumer of that one partition,
 *      up to the end it had once init was done: the last record keyed by the
 *      transactional id is the stream's position.
 * Streaming: the first event after a commit begins a Kafka transaction; PostgreSQL
 * transactions at or below the position are skipped whole (they are in Kafka); a
 * transaction is committed at the end of a PostgreSQL transaction once it is due (see
 * walship_sink.h), its last record the position (position_record.hpp). The watermark
 * then passes only what a commit made visible.
 *
 * Any failure of a transactional call ends the stream's worker: the launcher starts a
 * new one, whose init_transactions aborts what was left open, whose position skips what
 * was committed, and whose slot (confirmed only up to a commit) sends the rest. So every
 * recovery goes through the one path that is tested, and nothing is lost or doubled.
 */
#include "core_error.hpp" /* first: the guard that no PostgreSQL header got here */

#include "boundary.hpp"
#include "position_record.hpp"
#include "producer.hpp"
#include "producer_conf.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <iterator>
#include <memory>

namespace walship
{

namespace
{

/* Kafka's transaction.max.timeout.ms default: a long PostgreSQL transaction fits. */
constexpr const char *kDefaultTransactionTimeoutMs = "900000";
/* librdkafka's own socket.timeout.ms, which a transactional producer would otherwise
 * raise to its transaction.timeout.ms, hiding a dead broker for that long. */
constexpr long long kSocketTimeoutMs = 60000;
/* While the stream is behind, a Kafka transaction stays open at least this long. */
constexpr int kBacklogCommitMs = 1000;
/* One transactional call blocks the worker at most this long; then it is resumed. */
constexpr int kTransactionSliceMs = 100;
/* A just-created offsets topic may be unknown to the broker answering for a moment. */
constexpr int kUnknownTopicRetries = 50;

using Ms = std::chrono::milliseconds;

int64_t unix_micros()
{
    using namespace std::chrono;
    return duration_cast<microseconds>(system_clock::now().time_since_epoch()).count();
}

long long elapsed_ms(Clock::time_point since)
{
    return std::chrono::duration_cast<Ms>(Clock::now() - since).count();
}

struct ErrorDeleter {
    void operator()(rd_kafka_error_t *error) const
    {
        rd_kafka_error_destroy(error);
    }
};
using KafkaError = std::unique_ptr<rd_kafka_error_t, ErrorDeleter>;

} // namespace

/* ------------------------------------------------------------------------- */
/* Configuration                                                               */

void Producer::open_exactly_once(const ws_sink_config &config, ProducerConf &conf,
                                 bool transactional_id_given, bool timeout_given)
{
    std::string why;
    if (config.offsets_topic == nullptr || !is_valid_topic_name(config.offsets_topic))
        throw CoreError(WS_ERR_INVALID_OPTION,
                        "invalid offsets topic name " +
                            quoted(config.offsets_topic != nullptr ? config.offsets_topic : "") +
                            ": Kafka allows only ASCII letters, digits, '.', '_' and '-', at "
                            "most 249 of them",
                        {}, "Choose a shorter topic_prefix.");
    if (config.transaction_interval_ms < 1 || config.transaction_max_events < 1)
        throw CoreError(WS_ERR_INTERNAL, "exactly once without a transaction interval or size");
    if (!transactional_id_given) {
        if (config.transactional_id == nullptr || config.transactional_id[0] == '\0')
            throw CoreError(WS_ERR_INTERNAL, "exactly once without a transactional id");
        if (!conf.set("transactional.id", config.transactional_id, why))
            throw CoreError(WS_ERR_INVALID_OPTION, why);
    }
    if (!timeout_given && !conf.set("transaction.timeout.ms", kDefaultTransactionTimeoutMs, why))
        throw CoreError(WS_ERR_INTERNAL, "walship's default for " + why);
    std::string value;
    if (!conf.get("transactional.id", eos_.transactional_id) || eos_.transactional_id.empty())
        throw CoreError(WS_ERR_INVALID_OPTION, "Kafka property \"transactional.id\" is empty", {},
                        "Leave it out: walship derives one from the database and stream.");
    if (eos_.transactional_id.size() > 249)
        throw CoreError(WS_ERR_INVALID_OPTION,
                        "Kafka property \"transactional.id\" is longer than 249 bytes", {},
                        "It is also the key of the stream's position record; give a shorter "
                        "one.");
    if (conf.get("transaction.timeout.ms", value))
        eos_.transaction_timeout_ms = std::strtoll(value.c_str(), nullptr, 10);
    bool socket_timeout_given = false;
    for (int i = 0; i < config.nprops; ++i)
        if (config.prop_names[i] != nullptr &&
            std::strcmp(config.prop_names[i], "socket.timeout.ms") == 0)
            socket_timeout_given = true;
    if (!socket_timeout_given) {
        const long long socket_ms =
            std::max(std::min(kSocketTimeoutMs, eos_.transaction_timeout_ms - 100), 900LL);
        if (!conf.set("socket.timeout.ms", std::to_string(socket_ms).c_str(), why))
            throw CoreError(WS_ERR_INTERNAL, "walship's default for " + why);
    }
    eos_.offsets_topic = config.offsets_topic;
    eos_.interval_ms = config.transaction_interval_ms;
    eos_.max_events = config.transaction_max_events;
    eos_.stream = config.stream_name != nullptr ? config.stream_name : "";
    eos_.database = config.database_name != nullptr ? config.database_name : "";
    eos_.system_identifier = config.system_identifier;
    eos_.timeline = config.timeline;
    eos_.phase = ExactlyOnce::Phase::OffsetsTopic;
    eos_.phase_started = Clock::now();
}

void Producer::close_exactly_once() noexcept
{
    if (eos_.reader_topic != nullptr) {
        rd_kafka_consume_stop(eos_.reader_topic, 0);
        rd_kafka_topic_destroy(eos_.reader_topic);
        eos_.reader_topic = nullptr;
    }
    if (eos_.reader != nullptr) {
        rd_kafka_destroy(eos_.reader);
        eos_.reader = nullptr;
    }
}

/* ------------------------------------------------------------------------- */
/* Errors                                                                      */

void Producer::transaction_failed(const char *what, rd_kafka_error_t *raw)
{
    KafkaError error(raw);
    const rd_kafka_resp_err_t code = rd_kafka_error_code(raw);
    const bool fatal = rd_kafka_error_is_fatal(raw) != 0;
    const bool abortable = rd_kafka_error_txn_requires_abort(raw) != 0;
    std::string text = std::string("Kafka transaction failed (") + what +
                       "): " + scrubber_.scrub(rd_kafka_error_string(raw)) + " (" +
                       rd_kafka_err2name(code) + ")";
    std::string detail;
    std::string hint;
    if (transaction_timed_out(detail, hint)) {
        /* said */
    } else if (code == RD_KAFKA_RESP_ERR__FENCED || code == RD_KAFKA_RESP_ERR_PRODUCER_FENCED ||
               code == RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH) {
        text = "Kafka fenced this stream's producer: another producer with transactional.id " +
               quoted(eos_.transactional_id) + " took over (" + rd_kafka_err2name(code) + ")";
        detail = "Nothing of this worker's open Kafka transaction becomes visible to "
                 "read_committed consumers.";
        hint = "Two producers share the transactional id: another server or database with a "
               "stream of the same name, or a Kafka client, uses it. Give each stream its "
               "own with the Kafka property transactional.id.";
    } else if (code == RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED) {
        hint = "Grant the stream's Kafka principal WRITE and DESCRIBE on the transactional id " +
               quoted(eos_.transactional_id) + " (kafka-acls --transactional-id).";
    } else if (code == RD_KAFKA_RESP_ERR_INVALID_TRANSACTION_TIMEOUT) {
        hint = "transaction.timeout.ms (" + std::to_string(eos_.transaction_timeout_ms) +
               " ms) is above the brokers' transaction.max.timeout.ms: lower the Kafka "
               "property, or raise the broker setting.";
    } else if (code == RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED ||
               code == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED) {
        hint = "Grant the stream's Kafka principal the rights to write its topics and the "
               "offsets topic " +
               quoted(eos_.offsets_topic) + " inside transactions.";
    } else if (code == RD_KAFKA_RESP_ERR_UNSUPPORTED_FOR_MESSAGE_FORMAT ||
               code == RD_KAFKA_RESP_ERR_UNSUPPORTED_VERSION) {
        hint = "A topic of the stream does not accept transactional writes (an old message "
               "format or broker): use topics of the current format, or delivery "
               "at_least_once.";
    }
    if (detail.empty())
        detail = std::string(fatal       ? "The producer cannot go on (a fatal error)."
                             : abortable ? "The Kafka transaction is aborted: nothing of it is "
                                           "visible to read_committed consumers."
                                         : "") +
                 " The stream restarts, skips what Kafka committed and sends the rest.";
    /* an abortable transaction is aborted now, so that consumers wait for it no longer */
    if (abortable && !fatal && eos_.kafka != ExactlyOnce::Kafka::None) {
        KafkaError aborted(rd_kafka_abort_transaction(kafka_, 1000));
        (void)aborted;
    }
    watermark_.halt();
    throw CoreError(WS_ERR_KAFKA, text, detail, hint);
}

bool Producer::transaction_timed_out(std::string &detail, std::string &hint) const
{
    if (eos_.phase != ExactlyOnce::Phase::Ready || eos_.kafka == ExactlyOnce::Kafka::None ||
        eos_.kafka == ExactlyOnce::Kafka::Aborted || eos_.transaction_timeout_ms <= 0)
        return false;
    const long long age = elapsed_ms(eos_.began);
    if (age < eos_.transaction_timeout_ms)
        return false;
    detail = "The Kafka transaction was open for " + std::to_string(age) +
             " ms, longer than transaction.timeout.ms (" +
             std::to_string(eos_.transaction_timeout_ms) +
             " ms): its coordinator aborts it, and nothing of it becomes visible.";
    hint = "Raise the Kafka property transaction.timeout.ms (up to the brokers' "
           "transaction.max.timeout.ms) above the time the largest PostgreSQL transaction "
           "takes to send, with walship.alter_stream; the stream then sends it again.";
    return true;
}

/* ------------------------------------------------------------------------- */
/* Starting: the offsets topic, init_transactions, the position                */

ws_start_result Producer::start(int timeout_ms, ws_sink_position *position, ws_error *err)
{
    if (position != nullptr)
        *position = ws_sink_position{};
    if (!exactly_once() || eos_.phase == ExactlyOnce::Phase::Ready) {
        if (position != nullptr && eos_.found) {
            position->found = true;
            position->commit_lsn = eos_.position;
            position->timeline = eos_.position_timeline;
            position->system_identifier = eos_.position_system_identifier;
            copy_text(position->key, sizeof(position->key), eos_.transactional_id);
        }
        return WS_START_DONE;
    }
    const Clock::time_point deadline = Clock::now() + Ms(std::max(timeout_ms, 0));
    auto remaining = [&] {
        return static_cast<int>(std::max<long long>(
            std::chrono::duration_cast<Ms>(deadline - Clock::now()).count(), 0));
    };
    std::string why;
    if (eos_.phase == ExactlyOnce::Phase::OffsetsTopic) {
        SinkTopic &topic = topics_.topic(eos_.offsets_topic.c_str());
        if (topic.state == TopicState::Unchecked) {
            topic.partitions = 1;
            topic.configs = {{"cleanup.policy", "compact"},
                             /* compaction only cleans closed segments: keep them small */
                             {"segment.ms", "600000"},
                             {"min.compaction.lag.ms", "0"}};
        }
        for (;;) {
            Topics::Readiness ready = topics_.prepare(topic, why);
            if (ready == Topics::Readiness::Refused)
                throw CoreError(WS_ERR_KAFKA,
                                "could not prepare the offsets topic of an exactly-once stream: " +
                                    why,
                                {}, "walship keeps the stream's position in it.");
            if (ready == Topics::Readiness::Ready)
                break;
            if (remaining() == 0) {
                set_error(err, WS_ERR_NONE,
                          "creating the offsets topic " + quoted(eos_.offsets_topic) + ": " + why);
                return WS_START_PENDING;
            }
            serve(std::min(remaining(), 10));
        }
        eos_.phase = ExactlyOnce::Phase::Init;
        eos_.phase_started = Clock::now();
    }
    if (eos_.phase == ExactlyOnce::Phase::Init) {
        rd_kafka_error_t *raw = rd_kafka_init_transactions(
            kafka_, std::max(std::min(remaining(), kTransactionSliceMs), 1));
        serve(0); /* logs, errors */
        if (raw != nullptr) {
            if (rd_kafka_error_is_retriable(raw) && !rd_kafka_error_is_fatal(raw)) {
                set_error(err, WS_ERR_NONE,
                          "waiting for Kafka's transaction coordinator (" +
                              std::to_string(elapsed_ms(eos_.phase_started)) +
                              " ms): " + scrubber_.scrub(rd_kafka_error_string(raw)));
                rd_kafka_error_destroy(raw);
                return WS_START_PENDING;
            }
            transaction_failed("initializing the transactional producer", raw);
        }
        SinkTopic &topic = topics_.topic(eos_.offsets_topic.c_str());
        /* a topic walship has just created holds no position */
        eos_.phase = topic.created ? ExactlyOnce::Phase::Ready : ExactlyOnce::Phase::ReadPosition;
        eos_.phase_started = Clock::now();
        if (topic.created)
            logs_.add(kLogInfo, "exactly once: new offsets topic " + quoted(eos_.offsets_topic) +
                                    ", no position yet");
    }
    if (eos_.phase == ExactlyOnce::Phase::ReadPosition) {
        if (!read_position(std::max(remaining(), 1), why)) {
            set_error(err, WS_ERR_NONE, why);
            return WS_START_PENDING;
        }
        close_exactly_once();
        eos_.phase = ExactlyOnce::Phase::Ready;
    }
    return start(0, position, err);
}

/*
 * Reads the offsets topic's partition from its beginning, read_committed, up to the end
 * the first fetch reported (everything our fenced predecessors committed is below it);
 * the last record with our key wins. True when done; false (why) while under way.
 */
bool Producer::read_position(int timeout_ms, std::string &why)
{
    char errstr[512];
    if (eos_.reader == nullptr) {
        /* the producer's connection and security settings, without what only a
         * producer takes (librdkafka would warn about each) */
        static const char *kProducerOnly[] = {"transactional.id",
                                              "transaction.timeout.ms",
                                              "enable.idempotence",
                                              "enable.gapless.guarantee",
                                              "queue.buffering.",
                                              "linger.ms",
                                              "batch.",
                                              "message.timeout.ms",
                                              "compression.",
                                              "partitioner",
                                              "acks",
                                              "request.required.acks",
                                              "retries",
                                              "message.send.max.retries",
                                              "max.in.flight",
                                              "dr_msg_cb",
                                              "dr_cb",
                                              "delivery.report.only.error",
                                              "sticky.partitioning.linger.ms",
                                              "retry.backoff.ms",
                                              "request.timeout.ms",
                                              "delivery.timeout.ms",
                                              "queuing.strategy",
                                              "produce.offset.report",
                                              "msg_order_cmp",
                                              "error_cb",
                                              "client.id"};
        rd_kafka_conf_t *conf = rd_kafka_conf_dup_filter(rd_kafka_conf(kafka_),
                                                         std::size(kProducerOnly), kProducerOnly);
        const char *const settings[][2] = {{"client.id", "walship-position"},
                                           {"isolation.level", "read_committed"},
                                           {"enable.partition.eof", "true"},
                                           {"enable.auto.commit", "false"},
                                           {"enable.auto.offset.store", "false"},
                                           {"fetch.wait.max.ms", "50"},
                                           {"log.queue", "true"}};
        for (const auto &setting : settings) {
            if (rd_kafka_conf_set(conf, setting[0], setting[1], errstr, sizeof(errstr)) !=
                RD_KAFKA_CONF_OK) {
                rd_kafka_conf_destroy(conf);
                throw CoreError(WS_ERR_INTERNAL, std::string("position reader: ") + errstr);
            }
        }
        eos_.reader = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
        if (eos_.reader == nullptr) {
            rd_kafka_conf_destroy(conf);
            throw CoreError(WS_ERR_KAFKA, "could not create the consumer that reads the stream's "
                                          "position: " +
                                              scrubber_.scrub(errstr));
        }
        (void)rd_kafka_set_log_queue(eos_.reader, nullptr);
        eos_.reader_topic = rd_kafka_topic_new(eos_.reader, eos_.offsets_topic.c_str(), nullptr);
        if (eos_.reader_topic == nullptr ||
            rd_kafka_consume_start(eos_.reader_topic, 0, RD_KAFKA_OFFSET_BEGINNING) != 0)
            throw CoreError(WS_ERR_KAFKA, "could not read the offsets topic " +
                                              quoted(eos_.offsets_topic) + ": " +
                                              rd_kafka_err2str(rd_kafka_last_error()));
        eos_.end_offset = -1;
        eos_.next_offset = 0;
    }
    const Clock::time_point deadline = Clock::now() + Ms(timeout_ms);
    for (;;) {
        rd_kafka_poll(eos_.reader, 0); /* its logs */
        const int wait = static_cast<int>(std::max<long long>(
            std::chrono::duration_cast<Ms>(deadline - Clock::now()).count(), 0));
        rd_kafka_message_t *message = rd_kafka_consume(eos_.reader_topic, 0, std::min(wait, 100));
        if (message == nullptr) {
            if (Clock::now() >= deadline) {
                why = "reading the stream's position from Kafka topic " +
                      quoted(eos_.offsets_topic) + " (" +
                      std::to_string(elapsed_ms(eos_.phase_started)) + " ms, at offset " +
                      std::to_string(eos_.next_offset) + " of " +
                      (eos_.end_offset >= 0 ? std::to_string(eos_.end_offset)
                                            : std::string("an end not known yet")) +
                      ")";
                return false;
            }
            continue;
        }
        std::unique_ptr<rd_kafka_message_t, void (*)(rd_kafka_message_t *)> hold(
            message, rd_kafka_message_destroy);
        if (eos_.end_offset < 0) {
            int64_t low = 0, high = -1;
            if (rd_kafka_get_watermark_offsets(eos_.reader, eos_.offsets_topic.c_str(), 0, &low,
                                               &high) == RD_KAFKA_RESP_ERR_NO_ERROR &&
                high >= 0)
                eos_.end_offset = high;
        }
        if (message->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            eos_.next_offset = std::max(eos_.next_offset, message->offset);
        } else if (message->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
                   message->err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC ||
                   message->err == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION) {
            /* it exists (we checked): the broker answering has not heard of it yet */
            if (++eos_.unknown_topic_retries > kUnknownTopicRetries)
                throw CoreError(WS_ERR_KAFKA, "could not read the offsets topic " +
                                                  quoted(eos_.offsets_topic) + ": " +
                                                  rd_kafka_err2str(message->err));
            continue;
        } else if (message->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            throw CoreError(WS_ERR_KAFKA,
                            "could not read the stream's position from Kafka topic " +
                                quoted(eos_.offsets_topic) + ": " +
                                scrubber_.scrub(rd_kafka_message_errstr(message)) + " (" +
                                rd_kafka_err2name(message->err) + ")",
                            {}, "The stream's Kafka principal needs READ on the offsets topic.");
        } else {
            eos_.next_offset = std::max(eos_.next_offset, message->offset + 1);
            const std::string_view key(static_cast<const char *>(message->key),
                                       message->key != nullptr ? message->key_len : 0);
            if (message->key != nullptr && key == eos_.transactional_id) {
                /* the last record of the key is the position: a bad one is an error
                 * only if no later record replaces it */
                PositionRecord record;
                eos_.bad_record.clear();
                if (message->payload == nullptr) {
                    eos_.found = false; /* a tombstone: the position was reset */
                } else if (!parse_position_value(
                               std::string_view(static_cast<const char *>(message->payload),
                                                message->len),
                               record, eos_.bad_record)) {
                    eos_.found = false;
                    eos_.bad_record = "the stream's position record at offset " +
                                      std::to_string(message->offset) + " of Kafka topic " +
                                      quoted(eos_.offsets_topic) +
                                      " is not walship's: " + eos_.bad_record;
                } else {
                    eos_.found = true;
                    eos_.position = record.commit_lsn;
                    eos_.position_timeline = record.timeline;
                    eos_.position_system_identifier = record.system_identifier;
                }
            }
        }
        if (eos_.end_offset >= 0 && eos_.next_offset >= eos_.end_offset) {
            if (!eos_.bad_record.empty())
                throw CoreError(WS_ERR_INVALID_DATA, eos_.bad_record, {},
                                "Only walship writes records keyed by the stream's transactional "
                                "id " +
                                    quoted(eos_.transactional_id) +
                                    " to that topic; a tombstone (a null value) for that key "
                                    "resets the position.");
            logs_.add(kLogInfo, eos_.found ? "exactly once: position " + format_lsn(eos_.position) +
                                                 " read from topic " + quoted(eos_.offsets_topic)
                                           : "exactly once: no position yet in topic " +
                                                 quoted(eos_.offsets_topic));
            return true;
        }
    }
}

/* ------------------------------------------------------------------------- */
/* Streaming                                                                   */

void Producer::transaction_begun(uint64_t commit_lsn)
{
    if (eos_.phase != ExactlyOnce::Phase::Ready)
        throw CoreError(WS_ERR_INTERNAL, "walship bug: an exactly-once sink used before "
                                         "ws_sink_start was done");
    eos_.skipping = eos_.found && commit_lsn <= eos_.position;
}

void Producer::transaction_ended(uint64_t commit_lsn)
{
    if (eos_.kafka == ExactlyOnce::Kafka::Open && !eos_.skipping)
        eos_.last_lsn = commit_lsn;
    eos_.ended_lsn = commit_lsn;
    eos_.skipping = false;
}

bool Producer::admit_event(ws_produce_result *result, ws_error *err)
{
    *result = WS_PRODUCE_OK;
    if (eos_.skipping) {
        ++stats_.events_skipped;
        return false;
    }
    switch (eos_.kafka) {
    case ExactlyOnce::Kafka::Open:
        return true;
    case ExactlyOnce::Kafka::Aborted:
        throw CoreError(WS_ERR_INTERNAL, "walship bug: an event after the stop's abort");
    case ExactlyOnce::Kafka::Committing:
    case ExactlyOnce::Kafka::Aborting:
        set_error(err, WS_ERR_NONE, "the previous Kafka transaction is being committed");
        *result = WS_PRODUCE_COMMIT_PENDING;
        return false;
    case ExactlyOnce::Kafka::None:
        break;
    }
    if (rd_kafka_error_t *error = rd_kafka_begin_transaction(kafka_))
        transaction_failed("beginning a Kafka transaction", error);
    eos_.kafka = ExactlyOnce::Kafka::Open;
    eos_.began = Clock::now();
    eos_.events = 0;
    eos_.before_lsn = eos_.ended_lsn;
    eos_.last_lsn = 0;
    return true;
}

void Producer::produce_position()
{
    SinkTopic &topic = topics_.topic(eos_.offsets_topic.c_str());
    std::string why;
    if (topics_.prepare(topic, why) != Topics::Readiness::Ready || topic.handle == nullptr)
        throw CoreError(WS_ERR_INTERNAL, "walship bug: the offsets topic is not ready: " + why);
    PositionRecord record;
    record.stream = eos_.stream;
    record.database = eos_.database;
    record.system_identifier = eos_.system_identifier;
    record.timeline = eos_.timeline;
    record.commit_lsn = eos_.last_lsn;
    record.events = eos_.events;
    record.time_us = unix_micros();
    const std::string value = position_value(record);
    HeaderText lsn;
    lsn.set_lsn(record.commit_lsn);
    for (;;) {
        rd_kafka_resp_err_t err = rd_kafka_producev(
            kafka_, RD_KAFKA_V_RKT(topic.handle), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_KEY(eos_.transactional_id.data(), eos_.transactional_id.size()),
            RD_KAFKA_V_VALUE(const_cast<char *>(value.data()), value.size()),
            RD_KAFKA_V_HEADER("walship.lsn", lsn.text, lsn.length),
            RD_KAFKA_V_OPAQUE(reinterpret_cast<void *>(static_cast<uintptr_t>(kOpaquePositionTxn))),
            RD_KAFKA_V_END);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
            return;
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
            throw CoreError(WS_ERR_KAFKA, "could not produce the stream's position to Kafka "
                                          "topic " +
                                              quoted(eos_.offsets_topic) + ": " +
                                              rd_kafka_err2str(err));
        /* one small record: the queue makes room as Kafka acknowledges */
        rd_kafka_poll(kafka_, 10);
        check_fatal();
        if (failed())
            return;
    }
}

bool Producer::finish_kafka_transaction(bool commit, int timeout_ms)
{
    rd_kafka_error_t *error = commit ? rd_kafka_commit_transaction(kafka_, timeout_ms)
                                     : rd_kafka_abort_transaction(kafka_, timeout_ms);
    if (error == nullptr)
        return true;
    if (rd_kafka_error_is_retriable(error) && !rd_kafka_error_txn_requires_abort(error) &&
        !rd_kafka_error_is_fatal(error)) {
        rd_kafka_error_destroy(error); /* timed out: resumed by the next call */
        return false;
    }
    transaction_failed(commit ? "committing" : "aborting", error);
}

void Producer::step_transaction(int timeout_ms)
{
    if (eos_.phase != ExactlyOnce::Phase::Ready)
        return;
    if (eos_.kafka == ExactlyOnce::Kafka::Open && !watermark_.has_open_transaction()) {
        const Clock::time_point now = Clock::now();
        const long long age = elapsed_ms(eos_.began);
        /* Caught up, the interval runs from the previous commit's start, not from this
         * transaction's first event: what PostgreSQL committed while that commit ran
         * (the worker waits for it) has been waiting since, so a change waits about one
         * interval plus a commit, not two commits. Commits still start at most once an
         * interval. While behind, age: the transactions are large, not frequent. */
        const long long since_due = std::chrono::duration_cast<Ms>(now - eos_.last_due).count();
        const bool due = eos_.events >= static_cast<uint64_t>(eos_.max_events) ||
                         (since_due >= eos_.interval_ms && eos_.caught_up) ||
                         age >= std::max(eos_.interval_ms, kBacklogCommitMs);
        if (!due)
            return;
        eos_.last_due = now;
        produce_position();
        if (failed())
            return;
        eos_.kafka = ExactlyOnce::Kafka::Committing;
    }
    if (eos_.kafka != ExactlyOnce::Kafka::Committing)
        return;
    if (!finish_kafka_transaction(true, std::max(timeout_ms, kTransactionSliceMs)))
        return;
    eos_.committed = eos_.last_lsn;
    eos_.kafka = ExactlyOnce::Kafka::None;
    ++stats_.kafka_transactions;
}

uint64_t Producer::confirmable() const
{
    const uint64_t acked = watermark_.watermark();
    if (eos_.kafka == ExactlyOnce::Kafka::None)
        return acked;
    return std::min(acked, eos_.before_lsn);
}

bool Producer::idle() const
{
    return watermark_.idle() && eos_.kafka == ExactlyOnce::Kafka::None;
}

/* A stop: commit what is whole, or abort what is not, within timeout_ms. */
void Producer::end_transactions(int timeout_ms)
{
    const Clock::time_point deadline = Clock::now() + Ms(std::max(timeout_ms, 0));
    auto remaining = [&] {
        return static_cast<int>(std::max<long long>(
            std::chrono::duration_cast<Ms>(deadline - Clock::now()).count(), 0));
    };
    if (eos_.kafka == ExactlyOnce::Kafka::Open) {
        if (watermark_.has_open_transaction() || failed()) {
            /* a PostgreSQL transaction is half-way in it: nothing of it may show */
            eos_.kafka = ExactlyOnce::Kafka::Aborting;
            watermark_.halt();
        } else {
            produce_position();
            eos_.kafka = ExactlyOnce::Kafka::Committing;
        }
    }
    while (eos_.kafka == ExactlyOnce::Kafka::Committing ||
           eos_.kafka == ExactlyOnce::Kafka::Aborting) {
        const bool commit = eos_.kafka == ExactlyOnce::Kafka::Committing;
        if (finish_kafka_transaction(commit,
                                     std::max(std::min(remaining(), kTransactionSliceMs), 1))) {
            if (commit) {
                eos_.committed = eos_.last_lsn;
                ++stats_.kafka_transactions;
                eos_.kafka = ExactlyOnce::Kafka::None;
            } else {
                /* what the watermark passed inside it is not in Kafka */
                eos_.kafka = ExactlyOnce::Kafka::Aborted;
                return;
            }
            break;
        }
        if (remaining() == 0)
            throw CoreError(WS_ERR_KAFKA,
                            std::string("the Kafka transaction could not be ") +
                                (commit ? "committed" : "aborted") + " within " +
                                std::to_string(timeout_ms) +
                                " ms; read_committed consumers see nothing of it and the stream "
                                "sends it again when it starts");
    }
}

} // namespace walship
