/*
 * producer.cpp: the producer, librdkafka's callbacks and delivery tracking (see
 * producer.hpp).
 */
#include "core_error.hpp" /* first: the guard that no PostgreSQL header got here */

#include "producer.hpp"

#include "boundary.hpp"
#include "json_out.hpp"
#include "producer_conf.hpp"

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <utility>

namespace walship
{

namespace
{

/* A dead letter carries the event's key up to this size, else no key (key_omitted). */
constexpr size_t kDeadLetterMaxKeyBytes = 65536;
/* A message's opaque: its transaction's id (bits 0-39), the interned table it is about
 * (bits 40-62, 0 = none) and whether it is a dead letter (bit 63). */
constexpr unsigned kOpaqueSourceShift = kOpaqueTxnBits;
constexpr uint64_t kOpaqueTxnMask = kOpaquePositionTxn;
constexpr uint32_t kOpaqueMaxSources = uint32_t{1} << 23;
constexpr uint64_t kOpaqueDeadLetter = uint64_t{1} << 63;
static_assert(sizeof(uintptr_t) >= sizeof(uint64_t), "message opaques must hold 64 bits");
/* Kafka's default max.message.bytes for a topic (1 MiB plus a batch header): topics
 * walship creates keep the broker's own limit unless the producer's is larger. */
constexpr long long kKafkaDefaultMaxMessageBytes = 1048588;

/* What a message's opaque carries (see kOpaqueSourceShift). */
struct MessageTag {
    uint64_t txn;
    uint32_t source;
    bool dead_letter;

    void *opaque() const
    {
        return reinterpret_cast<void *>(
            static_cast<uintptr_t>(txn | (uint64_t{source} << kOpaqueSourceShift) |
                                   (dead_letter ? kOpaqueDeadLetter : 0)));
    }

    static MessageTag of(const void *opaque)
    {
        const uint64_t bits = static_cast<uint64_t>(reinterpret_cast<uintptr_t>(opaque));
        return MessageTag{bits & kOpaqueTxnMask,
                          static_cast<uint32_t>((bits & ~kOpaqueDeadLetter) >> kOpaqueSourceShift),
                          (bits & kOpaqueDeadLetter) != 0};
    }
};

/* The dead-letter record's value: what the event was, never its row. */
std::string dead_letter_value(const DeadLetter &letter, const std::string &table)
{
    std::string out = "{\"table\":";
    if (table.empty())
        out += "null";
    else
        json::append_string(out, table);
    out += ",\"topic\":";
    json::append_string(out, letter.topic);
    out += ",\"commit_lsn\":";
    json::append_string(out, format_lsn(letter.commit_lsn));
    out += ",\"xid\":" + std::to_string(letter.xid);
    out += ",\"size\":" + std::to_string(letter.size);
    out += ",\"key_size\":" + std::to_string(letter.key.size());
    if (letter.key.size() > kDeadLetterMaxKeyBytes)
        out += ",\"key_omitted\":true";
    out += ",\"error\":";
    json::append_string(out, letter.error);
    out += ",\"reason\":";
    json::append_string(out, letter.reason);
    out += "}";
    return out;
}

/* A header of a message librdkafka reports on, as text; empty when absent. */
std::string header_text(const rd_kafka_message_t *message, const char *name)
{
    rd_kafka_headers_t *headers = nullptr;
    const void *value = nullptr;
    size_t size = 0;
    if (rd_kafka_message_headers(message, &headers) != RD_KAFKA_RESP_ERR_NO_ERROR ||
        rd_kafka_header_get_last(headers, name, &value, &size) != RD_KAFKA_RESP_ERR_NO_ERROR ||
        value == nullptr)
        return std::string();
    return std::string(static_cast<const char *>(value), size);
}

/* The commit LSN and xid an event carries in its walship.lsn / walship.xid headers. */
uint64_t header_lsn(const rd_kafka_message_t *message)
{
    const std::string text = header_text(message, "walship.lsn");
    unsigned int hi = 0, lo = 0;
    if (std::sscanf(text.c_str(), "%X/%X", &hi, &lo) != 2)
        return 0;
    return (uint64_t{hi} << 32) | lo;
}

uint64_t header_xid(const rd_kafka_message_t *message)
{
    return std::strtoull(header_text(message, "walship.xid").c_str(), nullptr, 10);
}

/* Refusals of an event for its size: permanent, and about that event when it was alone. */
bool is_size_refusal(rd_kafka_resp_err_t err)
{
    return err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE ||
           err == RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE;
}

int64_t unix_micros_now()
{
    using namespace std::chrono;
    return duration_cast<microseconds>(system_clock::now().time_since_epoch()).count();
}

/* Milliseconds from now to deadline, at least 0. */
int remaining_ms(Clock::time_point deadline)
{
    auto remaining = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    return static_cast<int>(std::max<int64_t>(remaining.count(), 0));
}

} // namespace

void HeaderText::set_lsn(uint64_t lsn)
{
    if (valid && number == lsn)
        return;
    length = std::snprintf(text, sizeof(text), "%" PRIX32 "/%" PRIX32,
                           static_cast<uint32_t>(lsn >> 32), static_cast<uint32_t>(lsn));
    number = lsn;
    valid = true;
}

void HeaderText::set_decimal(uint64_t value)
{
    if (valid && number == value)
        return;
    length = std::snprintf(text, sizeof(text), "%" PRIu64, value);
    number = value;
    valid = true;
}

/* Stamps stats.last_ack_time_us when delivery reports served in its scope acknowledged
 * something: one clock read per poll instead of one per event. */
class Producer::AckClock
{
  public:
    explicit AckClock(Producer &producer) : producer_(producer), acked_(acknowledged(producer)) {}
    ~AckClock()
    {
        if (acknowledged(producer_) != acked_)
            producer_.stats_.last_ack_time_us = unix_micros_now();
    }
    AckClock(const AckClock &) = delete;
    AckClock &operator=(const AckClock &) = delete;

  private:
    static uint64_t acknowledged(const Producer &producer)
    {
        return producer.stats_.events_acked + producer.stats_.events_dead_lettered;
    }

    Producer &producer_;
    uint64_t acked_;
};

Producer::Producer() = default;

Producer::~Producer()
{
    close_exactly_once();
    /* topic handles and the creation queue before the producer they belong to */
    topics_.close();
    if (kafka_ != nullptr) {
        /* "Without waiting": what is still queued or in flight is dropped; the slot
         * has not been confirmed past it, so the next run sends it again. */
        rd_kafka_purge(kafka_, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_destroy(kafka_);
    }
}

/* ------------------------------------------------------------------------- */
/* Creating the producer                                                       */

namespace
{

/* A UUID version 7 (milliseconds since 1970, then random bits), as text. */
void draw_run_id(char (&out)[37])
{
    uint8_t b[16];
    std::random_device random;
    for (int i = 0; i < 16; i += 4) {
        uint32_t r = random();
        std::memcpy(b + i, &r, 4);
    }
    uint64_t ms = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                            std::chrono::system_clock::now().time_since_epoch())
                                            .count());
    for (int i = 0; i < 6; i++)
        b[i] = static_cast<uint8_t>(ms >> (8 * (5 - i)));
    b[6] = static_cast<uint8_t>(0x70 | (b[6] & 0x0F));
    b[8] = static_cast<uint8_t>(0x80 | (b[8] & 0x3F));
    static constexpr char kHex[] = "0123456789abcdef";
    int n = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[n++] = '-';
        out[n++] = kHex[b[i] >> 4];
        out[n++] = kHex[b[i] & 0xF];
    }
    out[n] = '\0';
}

} // namespace

void Producer::open(const ws_sink_config &config)
{
    if (config.nprops < 0 ||
        (config.nprops > 0 && (config.prop_names == nullptr || config.prop_values == nullptr)))
        throw CoreError(WS_ERR_INTERNAL, "invalid list of Kafka properties");
    if (config.topic_partitions == 0 || config.topic_partitions < -1)
        throw CoreError(WS_ERR_INVALID_OPTION, "topic partitions must be at least 1, or -1 for "
                                               "the broker's default, not " +
                                                   std::to_string(config.topic_partitions));
    if (config.topic_replication_factor == 0 || config.topic_replication_factor < -1 ||
        config.topic_replication_factor > INT16_MAX)
        throw CoreError(WS_ERR_INVALID_OPTION,
                        "topic replication factor must be at least 1, or -1 for the broker's "
                        "default, not " +
                            std::to_string(config.topic_replication_factor));
    if (config.dead_letter_topic != nullptr) {
        dead_letter_topic_ = config.dead_letter_topic;
        if (!is_valid_topic_name(dead_letter_topic_))
            throw CoreError(WS_ERR_INVALID_OPTION,
                            "invalid dead-letter topic name " + quoted(dead_letter_topic_) +
                                ": Kafka allows only ASCII letters, digits, '.', '_' and '-', at "
                                "most 249 of them");
    }
    if (config.context_logical_name != nullptr) {
        context_logical_name_ = config.context_logical_name;
        draw_run_id(run_id_);
    }
    Topics::Settings topic_settings;
    topic_settings.partitions = config.topic_partitions;
    topic_settings.replication_factor = config.topic_replication_factor;

    auto file = [&config](int i) {
        return config.prop_files != nullptr ? config.prop_files[i] : nullptr;
    };
    auto secret = [&config, &file](int i) {
        return (config.prop_secret != nullptr && config.prop_secret[i]) || file(i) != nullptr ||
               (config.prop_names[i] != nullptr && is_secret_property(config.prop_names[i]));
    };
    for (int i = 0; i < config.nprops; ++i) {
        if (secret(i))
            scrubber_.add(config.prop_values[i]);
    }

    ProducerConf conf(scrubber_);
    std::string why;
    bool has_bootstrap = config.bootstrap_servers != nullptr && config.bootstrap_servers[0] != '\0';
    if (has_bootstrap && !conf.set("bootstrap.servers", config.bootstrap_servers, why))
        throw CoreError(WS_ERR_INVALID_OPTION, why);
    for (const DefaultProperty &property : kDefaultProperties) {
        if (!conf.set(property.name, property.value, why))
            throw CoreError(WS_ERR_INTERNAL, "walship's default for " + why);
    }
    bool transactional_id_given = false;
    bool transaction_timeout_given = false;
    for (int i = 0; i < config.nprops; ++i) {
        const char *name = config.prop_names[i];
        /* exactly once, walship's transactions take these two from the stream */
        if (config.exactly_once && name != nullptr &&
            (std::strcmp(name, "transactional.id") == 0 ||
             std::strcmp(name, "transaction.timeout.ms") == 0)) {
            if (!conf.set(name, config.prop_values[i], why, secret(i)))
                throw CoreError(WS_ERR_INVALID_OPTION, why);
            if (std::strcmp(name, "transactional.id") == 0)
                transactional_id_given = true;
            else
                transaction_timeout_given = true;
            continue;
        }
        if (name != nullptr && (std::strcmp(name, "bootstrap.servers") == 0 ||
                                std::strcmp(name, "metadata.broker.list") == 0)) {
            if (has_bootstrap)
                throw CoreError(WS_ERR_CONFLICTING_OPTION,
                                "conflicting or redundant options: bootstrap servers given both "
                                "as the stream's servers and as Kafka property " +
                                    quoted(name));
            has_bootstrap = true;
        }
        if (!conf.check(name, config.prop_values[i], secret(i), why))
            throw CoreError(WS_ERR_INVALID_OPTION, why,
                            file(i) != nullptr
                                ? "The value was read from file " + quoted(file(i)) + "."
                                : std::string());
    }
    if (!has_bootstrap)
        throw CoreError(WS_ERR_INVALID_OPTION, "no Kafka bootstrap servers given");
    /* Topics we create accept what the producer may send (see kDefaultProperties). */
    std::string value;
    if (conf.get("message.max.bytes", value) &&
        std::strtoll(value.c_str(), nullptr, 10) > kKafkaDefaultMaxMessageBytes)
        topic_settings.max_message_bytes = value;
    if (conf.get("queue.buffering.max.kbytes", value))
        queue_max_bytes_ = static_cast<size_t>(std::strtoull(value.c_str(), nullptr, 10)) * 1024;
    if (conf.get("batch.size", value))
        batch_max_bytes_ = static_cast<size_t>(std::strtoull(value.c_str(), nullptr, 10));
    if (config.exactly_once)
        open_exactly_once(config, conf, transactional_id_given, transaction_timeout_given);
    /* After the stream's properties: these make the sink work, they are not tunable. */
    if (!conf.set("log.queue", "true", why))
        throw CoreError(WS_ERR_INTERNAL, why);
    rd_kafka_conf_set_opaque(conf.get(), this);
    rd_kafka_conf_set_dr_msg_cb(conf.get(), on_delivery);
    rd_kafka_conf_set_error_cb(conf.get(), on_error);
    rd_kafka_conf_set_log_cb(conf.get(), on_log);

    char errstr[512];
    kafka_ = rd_kafka_new(RD_KAFKA_PRODUCER, conf.get(), errstr, sizeof(errstr));
    if (kafka_ == nullptr)
        throw CoreError(WS_ERR_INVALID_OPTION,
                        "could not create the Kafka producer: " + scrubber_.scrub(errstr), {},
                        "Fix the stream's kafka properties; librdkafka's CONFIGURATION.md says "
                        "which combinations it accepts.");
    conf.release(); /* rd_kafka_new took it */

    /* Logs are queued by librdkafka's threads and served by rd_kafka_poll on ours. */
    rd_kafka_resp_err_t err = rd_kafka_set_log_queue(kafka_, nullptr);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
        throw CoreError(WS_ERR_KAFKA,
                        std::string("could not route librdkafka's logs to the stream worker: ") +
                            rd_kafka_err2str(err));
    topics_.open(kafka_, std::move(topic_settings));
}

/* ------------------------------------------------------------------------- */
/* What is recorded                                                            */

void Producer::record_failure(ws_error_kind kind, std::string_view message, std::string_view detail,
                              std::string_view hint) noexcept
{
    if (failed())
        return;
    set_error(&failure_, kind, message, detail, hint);
    /* exactly once: whatever Kafka says (fenced, an epoch, a failed delivery), a Kafka
     * transaction open past transaction.timeout.ms was aborted by its coordinator */
    guarded(nullptr, [&] {
        std::string why;
        std::string advice;
        if (transaction_timed_out(why, advice))
            set_error(&failure_, kind, message, why, advice);
    });
}

void Producer::record_failure(const ws_error &error) noexcept
{
    record_failure(error.kind != WS_ERR_NONE ? error.kind : WS_ERR_INTERNAL, error.message,
                   error.detail, error.hint);
}

void Producer::fail_open_transaction(const ws_error &error) noexcept
{
    watermark_.fail_open_transaction();
    record_failure(error);
}

void Producer::report_failure(ws_error *err) const noexcept
{
    if (err != nullptr)
        *err = failure_;
}

void Producer::record_last_error(std::string_view text) noexcept
{
    copy_text(last_error_, sizeof(last_error_), text);
    has_last_error_ = true;
}

bool Producer::last_error(ws_error *err) const noexcept
{
    if (!has_last_error_)
        return false;
    set_error(err, WS_ERR_KAFKA, last_error_);
    return true;
}

ws_sink_stats Producer::stats() const
{
    ws_sink_stats out = stats_;
    out.in_flight = watermark_.in_flight();
    out.transaction_ending =
        eos_.kafka == ExactlyOnce::Kafka::Committing || eos_.kafka == ExactlyOnce::Kafka::Aborting;
    return out;
}

void Producer::check_fatal()
{
    if (fatal_)
        return;
    char reason[512];
    rd_kafka_resp_err_t err = rd_kafka_fatal_error(kafka_, reason, sizeof(reason));
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
        return;
    fatal_ = true;
    watermark_.halt();
    std::string text = "fatal Kafka producer error: " + scrubber_.scrub(reason) + " (" +
                       rd_kafka_err2name(err) + ")";
    record_failure(WS_ERR_KAFKA, text);
    record_last_error(text);
}

/* ------------------------------------------------------------------------- */
/* librdkafka callbacks: served on the worker's thread; they only record.       */

void Producer::on_delivery(rd_kafka_t *, const rd_kafka_message_t *message, void *opaque)
{
    Producer *self = static_cast<Producer *>(opaque);
    ws_error thrown;
    if (guarded(&thrown, [&] { self->delivered(message); }) != WS_OK) {
        /* The event's fate is unknown now: never confirm past it. */
        self->watermark_.event_failed(MessageTag::of(message->_private).txn);
        self->record_failure(thrown);
    }
}

void Producer::delivered(const rd_kafka_message_t *message)
{
    const MessageTag tag = MessageTag::of(message->_private);
    if (tag.txn == kOpaquePositionTxn) {
        /* the stream's position record: its Kafka transaction's commit says the rest */
        if (message->err != RD_KAFKA_RESP_ERR_NO_ERROR)
            record_failure(WS_ERR_KAFKA,
                           scrubber_.scrub("could not write the stream's position to Kafka topic " +
                                           quoted(rd_kafka_topic_name(message->rkt)) + ": " +
                                           rd_kafka_err2str(message->err) + " (" +
                                           rd_kafka_err2name(message->err) + ")"));
        return;
    }
    if (message->err == RD_KAFKA_RESP_ERR_NO_ERROR && message->offset < 0) {
        /*
         * No offset: librdkafka 2.0 acknowledged the event implicitly, because a later
         * request of the partition succeeded after this one failed in a way that left
         * it possibly persisted. For the first requests of a producer id on a partition
         * that inference is wrong: the broker accepts any first sequence number of a
         * producer it does not know, so the later request succeeds while this one was
         * never stored (fixed in librdkafka 2.3, #4438). Seen here: an event missing from
         * Kafka after a stream restart. Never confirm such an event: send its
         * transaction again.
         */
        watermark_.event_failed(tag.txn);
        record_failure(WS_ERR_KAFKA,
                       "Kafka acknowledged an event to topic " +
                           quoted(rd_kafka_topic_name(message->rkt)) + " [" +
                           std::to_string(message->partition) +
                           "] without an offset (librdkafka inferred it from a later request "
                           "after an uncertain failure, which cannot prove it was stored): the "
                           "stream restarts from its slot and sends the transaction again");
        return;
    }
    if (message->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (!watermark_.event_acked(tag.txn)) {
            record_failure(WS_ERR_INTERNAL,
                           "delivery report for an event of no pending transaction (a walship "
                           "bug)");
            return;
        }
        if (tag.dead_letter)
            ++stats_.events_dead_lettered;
        else
            ++stats_.events_acked; /* the time: serve() reads the clock once per poll */
        has_last_error_ = false;
        return;
    }
    const size_t size = message->key_len + message->len;
    std::string text =
        std::string("could not deliver ") + (tag.dead_letter ? "a dead letter" : "an event") +
        " to Kafka topic " + quoted(rd_kafka_topic_name(message->rkt)) + ": " +
        rd_kafka_err2str(message->err) + " (" + rd_kafka_err2name(message->err) + ")";
    if (!tag.dead_letter && is_size_refusal(message->err) && !dead_letter_topic_.empty() &&
        size > batch_max_bytes_ && !exactly_once()) {
        /* Alone in its batch: the refusal is this event's. Its transaction keeps
         * waiting, for the dead letter now. */
        dead_letters_.push_back(DeadLetter{
            tag.txn, tag.source, rd_kafka_topic_name(message->rkt), message->key != nullptr,
            message->key != nullptr
                ? std::string(static_cast<const char *>(message->key), message->key_len)
                : std::string(),
            size, header_lsn(message), header_xid(message), rd_kafka_err2name(message->err),
            std::move(text)});
        return;
    }
    watermark_.event_failed(tag.txn);
    if (is_size_refusal(message->err)) {
        text += "; the event (" + std::to_string(size) +
                " bytes) or the batch it travelled in is larger than the topic's "
                "max.message.bytes (default: the broker's message.max.bytes): raise the "
                "topic's max.message.bytes (kafka-configs --alter --add-config "
                "max.message.bytes=...) to at least the producer's message.max.bytes";
        if (tag.dead_letter)
            ;
        else if (dead_letter_topic_.empty())
            text += ", or set the stream option on_refused to dead_letter";
        else if (exactly_once())
            text += " (with delivery exactly_once, an event the broker refuses fails its Kafka "
                    "transaction and cannot be dead-lettered; walship dead-letters those larger "
                    "than message.max.bytes itself, so keep the producer's message.max.bytes "
                    "within the topic's)";
        else
            text += " (an event no larger than batch.size, " + std::to_string(batch_max_bytes_) +
                    " bytes, shares its batch: its refusal may be another event's, so it is "
                    "not dead-lettered)";
    }
    record_failure(is_size_refusal(message->err) ? WS_ERR_LIMIT : WS_ERR_KAFKA,
                   scrubber_.scrub(text));
}

void Producer::on_error(rd_kafka_t *, int err, const char *reason, void *opaque)
{
    Producer *self = static_cast<Producer *>(opaque);
    ws_error thrown;
    if (guarded(&thrown, [&] {
            if (err == RD_KAFKA_RESP_ERR__FATAL) {
                self->check_fatal();
                return;
            }
            self->record_last_error(self->scrubber_.scrub(reason != nullptr ? reason : "") + " (" +
                                    rd_kafka_err2name(static_cast<rd_kafka_resp_err_t>(err)) + ")");
        }) != WS_OK)
        self->record_last_error(thrown.kind == WS_ERR_OUT_OF_MEMORY
                                    ? "Kafka error (out of memory while recording it)"
                                    : thrown.message);
}

void Producer::on_log(const rd_kafka_t *kafka, int level, const char *facility, const char *line)
{
    Producer *self = static_cast<Producer *>(rd_kafka_opaque(kafka));
    if (self == nullptr)
        return;
    if (guarded(nullptr, [&] { self->logs_.add(level, std::string(facility) + ": " + line); }) !=
        WS_OK)
        self->logs_.count_dropped();
}

/* ------------------------------------------------------------------------- */
/* Transactions and events                                                     */

void Producer::begin_txn(uint64_t commit_lsn)
{
    std::string why;
    if (!watermark_.begin(commit_lsn, why))
        throw CoreError(WS_ERR_INTERNAL, "walship bug: " + why);
    if (exactly_once())
        transaction_begun(commit_lsn);
}

void Producer::end_txn(uint64_t commit_lsn)
{
    std::string why;
    if (!watermark_.end(commit_lsn, why))
        throw CoreError(WS_ERR_INTERNAL, "walship bug: " + why);
    if (exactly_once())
        transaction_ended(commit_lsn);
}

uint32_t Producer::source_id(const char *table)
{
    if (table == nullptr || table[0] == '\0')
        return 0;
    if (sources_.size() > 1 && sources_.back() == table)
        return static_cast<uint32_t>(sources_.size() - 1);
    auto found = source_ids_.find(table);
    if (found != source_ids_.end())
        return found->second;
    if (sources_.size() >= kOpaqueMaxSources)
        return 0; /* a dead letter would name no table; nothing else depends on it */
    sources_.emplace_back(table);
    const auto id = static_cast<uint32_t>(sources_.size() - 1);
    source_ids_.emplace(sources_.back(), id);
    return id;
}

ws_produce_result Producer::produce(const char *topic_name, const char *table,
                                    const ws_record &record, uint64_t commit_lsn, uint32_t xid,
                                    ws_error *err)
{
    const uint8_t *key = record.key;
    const uint8_t *value = record.value;
    if (!watermark_.has_open_transaction() || watermark_.open_commit_lsn() != commit_lsn)
        throw CoreError(WS_ERR_INTERNAL, "walship bug: event with commit LSN " +
                                             format_lsn(commit_lsn) + " produced " +
                                             (watermark_.has_open_transaction()
                                                  ? "inside the transaction with commit LSN " +
                                                        format_lsn(watermark_.open_commit_lsn())
                                                  : std::string("outside a transaction")));
    if (topic_name == nullptr)
        throw CoreError(WS_ERR_INTERNAL, "event without a Kafka topic");
    const DeliveryWatermark::TransactionId txn = watermark_.open_transaction();
    if (txn >= kOpaquePositionTxn) /* a trillion transactions in one worker's life */
        throw CoreError(WS_ERR_LIMIT, "transaction ids of this Kafka producer are used up; the "
                                      "stream restarts");

    if (exactly_once()) {
        ws_produce_result result = WS_PRODUCE_OK;
        if (!admit_event(&result, err))
            return result; /* already in Kafka, or wait for the previous commit */
    }

    SinkTopic &topic = topics_.topic(topic_name);
    std::string why;
    switch (topics_.prepare(topic, why)) {
    case Topics::Readiness::Pending:
        set_error(err, WS_ERR_NONE, why);
        return WS_PRODUCE_TOPIC_PENDING;
    case Topics::Readiness::Refused:
        throw CoreError(WS_ERR_KAFKA, why);
    case Topics::Readiness::Ready:
        break;
    }

    /* A NULL value is a tombstone; a NULL key is no key. */
    const size_t key_size = key != nullptr ? record.keylen : 0;
    const size_t value_size = value != nullptr ? record.valuelen : 0;
    const MessageTag tag{txn, source_id(table), false};
    /* The producer's own refusals of this very event: a dead letter, or a failure. */
    auto letter = [&](rd_kafka_resp_err_t refusal, std::string reason) {
        return DeadLetter{txn,
                          tag.source,
                          topic.name,
                          key != nullptr,
                          key != nullptr
                              ? std::string(reinterpret_cast<const char *>(key), key_size)
                              : std::string(),
                          key_size + value_size,
                          commit_lsn,
                          xid,
                          rd_kafka_err2name(refusal),
                          std::move(reason)};
    };
    if (queue_max_bytes_ > 0 && key_size + value_size > queue_max_bytes_)
        return refuse(letter(RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE,
                             "could not produce an event to Kafka topic " + quoted(topic.name) +
                                 ": the event (" + std::to_string(key_size + value_size) +
                                 " bytes) is larger than the producer queue: raise the Kafka "
                                 "property \"queue.buffering.max.kbytes\" (" +
                                 std::to_string(queue_max_bytes_ / 1024) +
                                 ") above \"message.max.bytes\" or stop streaming this table"),
                      err);
    lsn_header_.set_lsn(commit_lsn);
    xid_header_.set_decimal(xid);
    /* topic, flags, key, value, opaque, and at most 7 headers (walship's 2, the record's
     * own, Debezium's 4 context headers) */
    constexpr size_t kMaxVus = 12;
    rd_kafka_vu_t vus[kMaxVus];
    size_t nvus = 0;
    auto header = [&](const char *name, const void *data, size_t size) {
        if (nvus + 2 > kMaxVus) /* the opaque comes last */
            throw CoreError(WS_ERR_INTERNAL, "walship bug: too many headers for one record");
        rd_kafka_vu_t &vu = vus[nvus++];
        vu.vtype = RD_KAFKA_VTYPE_HEADER;
        vu.u.header.name = name;
        vu.u.header.val = data;
        vu.u.header.size = static_cast<ssize_t>(size);
    };
    vus[nvus].vtype = RD_KAFKA_VTYPE_RKT;
    vus[nvus++].u.rkt = topic.handle;
    vus[nvus].vtype = RD_KAFKA_VTYPE_MSGFLAGS;
    vus[nvus++].u.i = RD_KAFKA_MSG_F_COPY;
    vus[nvus].vtype = RD_KAFKA_VTYPE_KEY;
    vus[nvus].u.mem.ptr = const_cast<uint8_t *>(key);
    vus[nvus++].u.mem.size = key_size;
    vus[nvus].vtype = RD_KAFKA_VTYPE_VALUE;
    vus[nvus].u.mem.ptr = const_cast<uint8_t *>(value);
    vus[nvus++].u.mem.size = value_size;
    header("walship.lsn", lsn_header_.text, lsn_header_.length);
    header("walship.xid", xid_header_.text, xid_header_.length);
    if (record.header != nullptr) /* a key change's other key */
        header(record.header, record.header_value, record.header_valuelen);
    if (!context_logical_name_.empty() && table != nullptr) { /* Debezium's, on table records */
        header("__debezium.context.connectorLogicalName", context_logical_name_.data(),
               context_logical_name_.size());
        header("__debezium.context.taskId", "0", 1);
        header("__debezium.context.connectorName", "postgresql", 10);
        header("__debezium.context.runId", run_id_, 36);
    }
    vus[nvus].vtype = RD_KAFKA_VTYPE_OPAQUE;
    vus[nvus++].u.ptr = tag.opaque();
    rd_kafka_resp_err_t res = RD_KAFKA_RESP_ERR_NO_ERROR;
    if (rd_kafka_error_t *error = rd_kafka_produceva(kafka_, vus, nvus)) {
        res = rd_kafka_error_code(error);
        rd_kafka_error_destroy(error);
    }
    if (res == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        set_error(err, WS_ERR_NONE,
                  "Kafka producer queue is full (" + std::to_string(watermark_.in_flight()) +
                      " events in flight)");
        return WS_PRODUCE_QUEUE_FULL;
    }
    if (res == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE)
        return refuse(letter(res, "could not produce an event to Kafka topic " +
                                      quoted(topic.name) + ": " + rd_kafka_err2str(res) + " (" +
                                      rd_kafka_err2name(res) + "); the event (" +
                                      std::to_string(key_size + value_size) +
                                      " bytes) is larger than the Kafka property "
                                      "\"message.max.bytes\": raise it (and the topic's "
                                      "max.message.bytes) or stop streaming this table"),
                      err);
    if (res != RD_KAFKA_RESP_ERR_NO_ERROR) {
        check_fatal();
        throw CoreError(WS_ERR_KAFKA, "could not produce an event to Kafka topic " +
                                          quoted(topic.name) + ": " + rd_kafka_err2str(res) + " (" +
                                          rd_kafka_err2name(res) + ")");
    }
    watermark_.event_produced();
    ++eos_.events;
    ++stats_.events_produced;
    stats_.bytes_produced += key_size + value_size;
    return WS_PRODUCE_OK;
}

ws_produce_result Producer::refuse(DeadLetter letter, ws_error *err)
{
    if (dead_letter_topic_.empty())
        throw CoreError(WS_ERR_LIMIT,
                        letter.reason + "; or set the stream option on_refused to dead_letter");
    std::string why;
    const ws_produce_result result = produce_dead_letter(letter, why);
    switch (result) {
    case WS_PRODUCE_OK:
        watermark_.event_produced();
        ++eos_.events;
        ++stats_.events_produced;
        break;
    case WS_PRODUCE_QUEUE_FULL:
    case WS_PRODUCE_TOPIC_PENDING:
    case WS_PRODUCE_COMMIT_PENDING:
        set_error(err, WS_ERR_NONE, why);
        break;
    case WS_PRODUCE_FAILED:
        throw CoreError(WS_ERR_KAFKA, why);
    }
    return result;
}

/*
 * Produces the dead letter of a refused event, tagged with the event's transaction, so
 * that the watermark waits for its acknowledgement.
 */
ws_produce_result Producer::produce_dead_letter(const DeadLetter &letter, std::string &why)
{
    SinkTopic &dlq = topics_.topic(dead_letter_topic_.c_str());
    switch (topics_.prepare(dlq, why)) {
    case Topics::Readiness::Pending:
        return WS_PRODUCE_TOPIC_PENDING;
    case Topics::Readiness::Refused:
        why = "could not write the dead letter of a refused event (" + letter.reason + "): " + why;
        return WS_PRODUCE_FAILED;
    case Topics::Readiness::Ready:
        break;
    }
    const std::string &table = letter.source < sources_.size() ? sources_[letter.source] : "";
    const std::string value = dead_letter_value(letter, table);
    const bool with_key = letter.has_key && letter.key.size() <= kDeadLetterMaxKeyBytes;
    HeaderText lsn;
    HeaderText xid;
    lsn.set_lsn(letter.commit_lsn);
    xid.set_decimal(letter.xid);
    rd_kafka_resp_err_t err = rd_kafka_producev(
        kafka_, RD_KAFKA_V_RKT(dlq.handle), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_KEY(with_key ? letter.key.data() : nullptr, with_key ? letter.key.size() : 0),
        RD_KAFKA_V_VALUE(const_cast<char *>(value.data()), value.size()),
        RD_KAFKA_V_HEADER("walship.lsn", lsn.text, lsn.length),
        RD_KAFKA_V_HEADER("walship.xid", xid.text, xid.length),
        RD_KAFKA_V_OPAQUE((MessageTag{letter.txn, letter.source, true}.opaque())), RD_KAFKA_V_END);
    if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        why = "Kafka producer queue is full (" + std::to_string(watermark_.in_flight()) +
              " events in flight)";
        return WS_PRODUCE_QUEUE_FULL;
    }
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        check_fatal();
        why = "could not produce the dead letter of a refused event (" + letter.reason +
              ") to Kafka topic " + quoted(dlq.name) + ": " + rd_kafka_err2str(err) + " (" +
              rd_kafka_err2name(err) + ")";
        return WS_PRODUCE_FAILED;
    }
    /* produced: the caller's bookkeeping must follow, whatever the log */
    if (guarded(nullptr, [&] {
            logs_.add(kLogWarning,
                      "dead-lettered an event of " +
                          (table.empty() ? std::string("no table") : "table " + quoted(table)) +
                          " with commit LSN " + format_lsn(letter.commit_lsn) + " (" +
                          std::to_string(letter.size) + " bytes) to Kafka topic " +
                          quoted(dlq.name) + ": " + letter.reason);
        }) != WS_OK)
        logs_.count_dropped();
    return WS_PRODUCE_OK;
}

/* Dead letters of events the broker refused, in the order of the refusals. */
void Producer::write_dead_letters()
{
    while (!dead_letters_.empty() && !failed()) {
        std::string why;
        const DeadLetter &letter = dead_letters_.front();
        ws_produce_result result = produce_dead_letter(letter, why);
        if (result == WS_PRODUCE_QUEUE_FULL || result == WS_PRODUCE_TOPIC_PENDING)
            return;
        if (result == WS_PRODUCE_FAILED) {
            watermark_.event_failed(letter.txn);
            record_failure(WS_ERR_KAFKA, scrubber_.scrub(why));
        }
        dead_letters_.pop_front();
    }
}

/* ------------------------------------------------------------------------- */
/* Serving librdkafka                                                          */

/*
 * rd_kafka_poll for up to timeout_ms, returning early once something was served, like
 * rd_kafka_poll itself. While a topic is being created, its answer arrives on another
 * queue: wait in short slices on both so that the caller retries its produce promptly.
 */
void Producer::serve(int timeout_ms)
{
    const AckClock ack_clock(*this);
    if (timeout_ms < 0 || failed())
        timeout_ms = 0;
    const Clock::time_point deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
        if (topics_.creating() == 0) {
            rd_kafka_poll(kafka_, remaining_ms(deadline));
            return;
        }
        int creating = topics_.creating();
        int slice = std::min(remaining_ms(deadline), 10);
        int served = rd_kafka_poll(kafka_, slice);
        topics_.serve_results(0);
        if (served > 0 || topics_.creating() < creating || Clock::now() >= deadline)
            return;
    }
}

void Producer::poll(int timeout_ms)
{
    serve(timeout_ms);
    write_dead_letters();
    check_fatal();
    if (exactly_once() && !failed())
        step_transaction(timeout_ms);
}

void Producer::flush(int timeout_ms)
{
    if (exactly_once() && eos_.phase == ExactlyOnce::Phase::Ready &&
        eos_.kafka != ExactlyOnce::Kafka::None) {
        /* a commit flushes everything; an abort drops it */
        end_transactions(timeout_ms);
        return;
    }
    {
        /* Dead letters are produced as the refusals behind them are served. */
        const AckClock ack_clock(*this);
        const Clock::time_point deadline =
            Clock::now() + std::chrono::milliseconds(std::max(timeout_ms, 0));
        do {
            write_dead_letters();
            rd_kafka_flush(kafka_, remaining_ms(deadline));
            /* a dead letter waiting for its topic: wait for the creation, not spin */
            if (!dead_letters_.empty())
                serve(10);
        } while (!dead_letters_.empty() && !failed() && Clock::now() < deadline);
    }
    topics_.serve_results(0);
    check_fatal();
    if (failed() || watermark_.in_flight() == 0)
        return;
    throw CoreError(WS_ERR_KAFKA, std::to_string(watermark_.in_flight()) +
                                      " events still in flight to Kafka after " +
                                      std::to_string(std::max(timeout_ms, 0)) + " ms");
}

} // namespace walship
