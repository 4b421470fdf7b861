/*
 * producer.hpp: one stream's idempotent Kafka producer, what librdkafka reports back
 * about it, and the delivery tracking behind the LSN watermark.
 *
 * librdkafka's callbacks (delivery reports, errors, logs) are all served on the stream
 * worker's thread by rd_kafka_poll / rd_kafka_flush, and they only record: a failed
 * delivery, a fatal error, the latest broker error, a log line. The worker reads those
 * records through walship_sink.h after polling and acts on them (ereport, restart);
 * nothing here calls back into PostgreSQL.
 *
 * Delivery: the producer is idempotent (acks=all, at most 5 requests in flight, retries
 * without end) and messages never time out (message.timeout.ms=0), so during a Kafka
 * outage events wait, librdkafka's bounded queue fills, produce answers QUEUE_FULL and
 * the worker stops decoding until Kafka is back; then everything is delivered once, in
 * order. A delivery that fails anyway (authorization, message too large, a topic that
 * does not exist and is not created) stops the watermark in front of its transaction
 * for good and poll reports the failure: the stream restarts from the slot and sends
 * that transaction again. Nothing is confirmed that Kafka lacks.
 *
 * Dead letters: with a dead-letter topic configured, an event Kafka refuses for good
 * because of the event itself (its size) is replaced by a small JSON record naming it,
 * produced to that topic in the same transaction: the watermark passes the transaction
 * once the dead letter is acknowledged, and the stream goes on. Only refusals that are
 * certainly about that one event qualify: the producer's own limits, checked before the
 * event is queued, and a broker's size refusal of an event larger than batch.size, which
 * travels alone in its batch. A broker refusing a batch of smaller events, a topic Kafka
 * refuses, an authorization failure: those are the stream's configuration, and stop it.
 *
 * Failures throw CoreError (walship/boundary.hpp); the C boundary (sink.cpp) records
 * what was thrown as the sink's failure, the first of which is what every later call
 * reports.
 */
#ifndef WALSHIP_SINK_PRODUCER_HPP
#define WALSHIP_SINK_PRODUCER_HPP

#include "log_queue.hpp"
#include "properties.hpp"
#include "topics.hpp"
#include "walship_sink.h"
#include "watermark.hpp"

#include <librdkafka/rdkafka.h>

#include <cstdint>
#include <deque>
#include <string>
#include <unordered_map>
#include <vector>

namespace walship
{

/* An event Kafka refused for good, to be written to the dead-letter topic instead. */
struct DeadLetter {
    uint64_t txn;
    uint32_t source;
    std::string topic;
    bool has_key; /* a NULL key stays NULL */
    std::string key;
    size_t size;
    uint64_t commit_lsn;
    uint64_t xid;
    std::string error; /* the error's name, e.g. MSG_SIZE_TOO_LARGE */
    std::string reason;
};

class ProducerConf;

/* A message's opaque holds its transaction's id in its low kOpaqueTxnBits bits. The
 * largest such id is the stream's position record's (exactly once): no transaction of
 * the watermark's ever has it (produce refuses ids from there up). */
constexpr unsigned kOpaqueTxnBits = 40;
constexpr uint64_t kOpaquePositionTxn = (uint64_t{1} << kOpaqueTxnBits) - 1;

/*
 * Exactly once (exactly_once.cpp): the transactional producer's state. One Kafka
 * transaction is open at a time; it holds whole PostgreSQL transactions (the watermark's)
 * and ends with the stream's position record.
 */
struct ExactlyOnce {
    enum class Phase { Off, OffsetsTopic, Init, ReadPosition, Ready };
    /* Aborted: by a stop; what the watermark passed inside it stays unconfirmed */
    enum class Kafka { None, Open, Committing, Aborting, Aborted };

    Phase phase = Phase::Off;
    std::string transactional_id;
    std::string offsets_topic;
    std::string stream;
    std::string database;
    uint64_t system_identifier = 0;
    uint32_t timeline = 0;
    int interval_ms = 50;
    int max_events = 100000;
    long long transaction_timeout_ms = 0;

    /* the position read at the start: transactions at or below it are skipped */
    bool found = false;
    uint64_t position = 0;
    uint32_t position_timeline = 0;
    uint64_t position_system_identifier = 0;
    /* reading it back: a read_committed consumer of the offsets topic's one partition */
    rd_kafka_t *reader = nullptr;
    rd_kafka_topic_t *reader_topic = nullptr;
    int64_t end_offset = -1; /* the partition's end when reading began */
    int64_t next_offset = 0; /* read up to here */
    int unknown_topic_retries = 0;
    std::string bad_record; /* why the last record of the key is not a position */
    Clock::time_point phase_started;

    /* the open Kafka transaction */
    Kafka kafka = Kafka::None;
    Clock::time_point began;
    /* when the previous Kafka transaction became due (its commit began) */
    Clock::time_point last_due;
    uint64_t events = 0;     /* produced in it (dead letters too) */
    uint64_t before_lsn = 0; /* commit LSN of the PostgreSQL transaction before its first */
    uint64_t last_lsn = 0;   /* of the last PostgreSQL transaction ended in it */
    uint64_t last_xid = 0;
    uint64_t ended_lsn = 0; /* of the last PostgreSQL transaction ended at all */
    bool skipping = false;  /* the open PostgreSQL transaction is at or below position */
    uint64_t committed = 0; /* commit LSN the last Kafka commit made visible */
    bool caught_up = false;
};

/* A header value and the number it was formatted from. */
struct HeaderText {
    bool valid = false;
    uint64_t number = 0;
    int length = 0;
    char text[24] = "";

    void set_lsn(uint64_t lsn);
    void set_decimal(uint64_t value);
};

class Producer
{
  public:
    Producer();
    ~Producer();
    Producer(const Producer &) = delete;
    Producer &operator=(const Producer &) = delete;

    /* Checks config and creates the producer; throws CoreError naming what is wrong. */
    void open(const ws_sink_config &config);

    rd_kafka_t *kafka() const
    {
        return kafka_;
    }
    Topics &topics()
    {
        return topics_;
    }
    LogQueue &logs()
    {
        return logs_;
    }
    const DeliveryWatermark &watermark() const
    {
        return watermark_;
    }
    ws_sink_stats stats() const;

    /* Transactions bracket events; a caller out of order is a bug (CoreError). */
    void begin_txn(uint64_t commit_lsn);
    void end_txn(uint64_t commit_lsn);
    /*
     * Hands one event to librdkafka. QUEUE_FULL and TOPIC_PENDING say why in *err (kind
     * WS_ERR_NONE); a refusal throws, and the caller fails the open transaction with it.
     */
    ws_produce_result produce(const char *topic_name, const char *table, const ws_record &record,
                              uint64_t commit_lsn, uint32_t xid, ws_error *err);
    /* Serves delivery reports and errors for up to timeout_ms, then the dead letters. */
    void poll(int timeout_ms);
    /* Waits up to timeout_ms for everything in flight (and the dead letters). */
    void flush(int timeout_ms);

    /* Exactly once (exactly_once.cpp); at least once, start is DONE at once. */
    ws_start_result start(int timeout_ms, ws_sink_position *position, ws_error *err);
    void set_caught_up(bool caught_up)
    {
        eos_.caught_up = caught_up;
    }
    bool exactly_once() const
    {
        return eos_.phase != ExactlyOnce::Phase::Off;
    }
    /* What may be confirmed: the watermark, and exactly once, no further than the last
     * PostgreSQL transaction before the Kafka transaction not yet committed. */
    uint64_t confirmable() const;
    /* Nothing open, unacknowledged or uncommitted. */
    bool idle() const;

    /* The stream's failure: the first one recorded wins and it never clears. */
    bool failed() const
    {
        return failure_.kind != WS_ERR_NONE;
    }
    void record_failure(ws_error_kind kind, std::string_view message, std::string_view detail = {},
                        std::string_view hint = {}) noexcept;
    void record_failure(const ws_error &error) noexcept;
    /* The event being produced failed: its transaction never completes. */
    void fail_open_transaction(const ws_error &error) noexcept;
    /* Copies the recorded failure into err. */
    void report_failure(ws_error *err) const noexcept;
    /* The latest broker-level error; false when none since the last delivery. */
    bool last_error(ws_error *err) const noexcept;

    /* librdkafka's callbacks (opaque: the Producer). */
    static void on_delivery(rd_kafka_t *, const rd_kafka_message_t *message, void *opaque);
    static void on_error(rd_kafka_t *, int err, const char *reason, void *opaque);
    static void on_log(const rd_kafka_t *kafka, int level, const char *facility, const char *line);

  private:
    class AckClock;

    void delivered(const rd_kafka_message_t *message);
    void record_last_error(std::string_view text) noexcept;
    void check_fatal();
    uint32_t source_id(const char *table);
    /* The producer's own refusal of the event being produced: a dead letter instead, or
     * (throws) a failure. */
    ws_produce_result refuse(DeadLetter letter, ws_error *err);
    /* OK, QUEUE_FULL or TOPIC_PENDING (call again), or FAILED and why. */
    ws_produce_result produce_dead_letter(const DeadLetter &letter, std::string &why);
    void write_dead_letters();
    void serve(int timeout_ms);

    /* Exactly once (exactly_once.cpp) */
    void open_exactly_once(const ws_sink_config &config, ProducerConf &conf,
                           bool transactional_id_given, bool timeout_given);
    void close_exactly_once() noexcept;
    /* Before an event of a PostgreSQL transaction: false when it is skipped (already in
     * Kafka); COMMIT_PENDING in *result while the previous Kafka transaction commits. */
    bool admit_event(ws_produce_result *result, ws_error *err);
    void transaction_begun(uint64_t commit_lsn);
    void transaction_ended(uint64_t commit_lsn);
    /* Commits the Kafka transaction when due, or goes on committing it. */
    void step_transaction(int timeout_ms);
    void produce_position();
    /* The open Kafka transaction is older than transaction.timeout.ms: what that means
     * (detail) and what to do (hint). */
    bool transaction_timed_out(std::string &detail, std::string &hint) const;
    /* A stop: commit what is whole, abort what is not (throws when it cannot in time). */
    void end_transactions(int timeout_ms);
    /* One slice of commit_transaction / abort_transaction; true when done. */
    bool finish_kafka_transaction(bool commit, int timeout_ms);
    /* The Kafka error of a transactional call as the stream's failure (throws). */
    [[noreturn]] void transaction_failed(const char *what, rd_kafka_error_t *error);
    bool read_position(int timeout_ms, std::string &why);

    SecretScrubber scrubber_;
    LogQueue logs_{scrubber_};
    DeliveryWatermark watermark_;
    rd_kafka_t *kafka_ = nullptr;
    Topics topics_{logs_, scrubber_};
    /* queue.buffering.max.kbytes in bytes: librdkafka answers QUEUE_FULL for ever to an
     * event larger than this, so such an event fails instead (0: not known). */
    size_t queue_max_bytes_ = 0;

    /* Dead letters (ws_sink_config.dead_letter_topic); empty: refused events fail. */
    std::string dead_letter_topic_;
    /* ws_sink_config.context_logical_name; empty: no context headers */
    std::string context_logical_name_;
    char run_id_[37] = {}; /* the context headers' runId, a UUID (version 7) */
    /* batch.size: an event larger than this travels alone in its batch. */
    size_t batch_max_bytes_ = SIZE_MAX; /* not known: no refusal is certainly one event's */
    /* The tables events are about, interned: a message's opaque holds the index. */
    std::vector<std::string> sources_{std::string()};
    std::unordered_map<std::string, uint32_t> source_ids_;
    /* Refused by the broker, to be produced to the dead-letter topic at the next poll;
     * their transactions wait for them. */
    std::deque<DeadLetter> dead_letters_;

    /* What the callbacks recorded. Fixed buffers, so that a failure is kept even when
     * memory ran out while describing it. */
    ws_error failure_{};
    bool fatal_ = false;
    bool has_last_error_ = false;
    char last_error_[WS_ERRMSG_SIZE] = "";
    ws_sink_stats stats_{};

    /* The walship.lsn and walship.xid header values of the latest event: all events of a
     * transaction share them, so they are formatted once per transaction, not per event. */
    HeaderText lsn_header_;
    HeaderText xid_header_;

    ExactlyOnce eos_;
};

} // namespace walship

#endif
