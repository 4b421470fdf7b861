/*
 * sink.cpp: the Kafka sink behind walship_sink.h; the one place that talks to librdkafka.
 *
 * It owns the idempotent producer of one stream, the topics it has created, the LSN
 * watermark (watermark.hpp) and everything librdkafka reports back. librdkafka's
 * callbacks (delivery reports, errors, logs) are all served on the stream worker's
 * thread by rd_kafka_poll / rd_kafka_flush, and they only record: a failed delivery, a
 * fatal error, the latest broker error, a log line. The worker reads those records
 * through the API after polling and acts on them (ereport, restart); nothing here calls
 * back into PostgreSQL.
 *
 * Delivery: the producer is idempotent (acks=all, at most 5 requests in flight, retries
 * without end) and messages never time out (message.timeout.ms=0), so during a Kafka
 * outage events wait, librdkafka's bounded queue fills, ws_sink_produce answers
 * QUEUE_FULL and the worker stops decoding until Kafka is back; then everything is
 * delivered once, in order. A delivery that fails anyway (authorization, message too
 * large, a topic that does not exist and is not created) stops the watermark in front of
 * its transaction for good and ws_sink_poll returns WS_ERROR: the stream restarts from
 * the slot and sends that transaction again. Nothing is confirmed that Kafka lacks.
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
 * Topics: the first event for a topic sends CreateTopics (the stream's partitions and
 * replication factor, and max.message.bytes to match the producer's message.max.bytes)
 * and answers QUEUE_FULL until the broker has answered, so the worker keeps checking
 * interrupts while it waits. Only then does the producer look the topic up: an earlier
 * lookup would let a broker with auto.create.topics.enable create it first, with its own
 * defaults. See classify_creation for what each answer leads to.
 */
#include "core_error.hpp" /* first: the guard that no PostgreSQL header got here */

#include "walship_sink.h"
#include "sink_internal.hpp"
#include "watermark.hpp"
#include "json_out.hpp"

#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cinttypes>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <new>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace
{

using Clock = std::chrono::steady_clock;

/* CreateTopics: how long we wait for one answer (the broker gets half of it to finish
 * the creation). The worker is not blocked meanwhile: produce says QUEUE_FULL. */
constexpr int kTopicCreateRequestTimeoutMs = 10000;
/* Retriable creation failures (broker down, controller moving) back off to this. */
constexpr int kTopicCreateFirstBackoffMs = 500;
constexpr int kTopicCreateMaxBackoffMs = 10000;
/* How long a cluster that answers metadata may keep failing to create a topic before we
 * produce to it anyway. A cluster that never answered is down: for it we wait without
 * limit, as delivery would anyway. */
constexpr int kTopicCreateBudgetMs = 60000;
/* Kafka's own limit on topic names. */
constexpr size_t kTopicNameMaxLength = 249;
/* A dead letter carries the event's key up to this size, else no key (key_omitted). */
constexpr size_t kDeadLetterMaxKeyBytes = 65536;
/* A message's opaque: its transaction's id (bits 0-39), the interned table it is about
 * (bits 40-62, 0 = none) and whether it is a dead letter (bit 63). */
constexpr unsigned kOpaqueSourceShift = 40;
constexpr uint64_t kOpaqueTxnMask = (uint64_t{1} << kOpaqueSourceShift) - 1;
constexpr uint32_t kOpaqueMaxSources = uint32_t{1} << 23;
constexpr uint64_t kOpaqueDeadLetter = uint64_t{1} << 63;
static_assert(sizeof(uintptr_t) >= sizeof(uint64_t), "message opaques must hold 64 bits");
/* Log lines waiting for ws_sink_next_log; beyond this the oldest are dropped (and
 * counted) rather than growing without bound when the worker does not read them. */
constexpr size_t kMaxQueuedLogLines = 1000;
/* Syslog levels, as librdkafka uses them. */
constexpr int kLogWarning = 4;
constexpr int kLogInfo = 6;
/* Kafka's default max.message.bytes for a topic (1 MiB plus a batch header): topics
 * walship creates keep the broker's own limit unless the producer's is larger. */
constexpr long long kKafkaDefaultMaxMessageBytes = 1048588;

/*
 * Producer settings walship starts from. Every one can be overridden by the stream's
 * properties, except those the property policy below refuses.
 */
struct DefaultProperty {
    const char *name;
    const char *value;
};
constexpr DefaultProperty kDefaultProperties[] = {
    {"client.id", "walship"},
    /* Idempotence implies acks=all, max.in.flight<=5 and retries without end. */
    {"enable.idempotence", "true"},
    /* Java clients' partitioner: the same key lands in the same partition whichever
     * client wrote it; events without a key spread at random. */
    {"partitioner", "murmur2_random"},
    /* Infinite: a Kafka outage never fails an event; the worker waits (backpressure)
     * and catches up. A bounded value is allowed: failed events restart the stream. */
    {"message.timeout.ms", "0"},
    /* Throughput: small batching delay, large batches, no compression by default. */
    {"linger.ms", "5"},
    {"batch.num.messages", "10000"},
    {"batch.size", "1000000"},
    {"compression.type", "none"},
    /* Largest event (key, value, headers, framing): 32 MiB, against librdkafka's and
     * Kafka's 1 MB, so that large (TOAST-ed) rows flow. A larger message goes out alone
     * in its batch; batch.size still bounds batches of small ones. It must stay below
     * queue.buffering.max.kbytes, or such an event would never fit in the queue, and
     * below the broker's socket.request.max.bytes (100 MiB). Topics walship creates get
     * it as their max.message.bytes. */
    {"message.max.bytes", "33554432"},
    /* Bounded queue (librdkafka's default is 1 GiB): a full queue is backpressure on the
     * worker, not memory growth in a PostgreSQL process. */
    {"queue.buffering.max.messages", "100000"},
    {"queue.buffering.max.kbytes", "65536"},
    /* librdkafka runs this template through system() to refresh Kerberos tickets
     * (GSSAPI), substituting %{property} values into it. The stream may not set it; walship
     * sets its own, which only ever substitutes the principal and the keytab, single-
     * quoted, and property_allowed admits only plain names and paths for those two. */
    {"sasl.kerberos.kinit.cmd", "kinit -R -t '%{sasl.kerberos.keytab}' -k "
                                "'%{sasl.kerberos.principal}' || kinit -t "
                                "'%{sasl.kerberos.keytab}' -k '%{sasl.kerberos.principal}'"},
};

/* ------------------------------------------------------------------------- */
/* Messages                                                                    */

void write_errmsg(char *errmsg, const char *text)
{
    if (errmsg == nullptr)
        return;
    std::snprintf(errmsg, WS_ERRMSG_SIZE, "%s", text);
}

void write_errmsg(char *errmsg, const std::string &text)
{
    write_errmsg(errmsg, text.c_str());
}

std::string quoted(const std::string &text)
{
    return "\"" + text + "\"";
}

bool contains_ignoring_case(const std::string &text, const char *part)
{
    std::string lower(text);
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return lower.find(part) != std::string::npos;
}

bool equals_ignoring_case(const char *a, const char *b)
{
    for (; *a != '\0' && *b != '\0'; ++a, ++b) {
        if (std::tolower(static_cast<unsigned char>(*a)) !=
            std::tolower(static_cast<unsigned char>(*b)))
            return false;
    }
    return *a == *b;
}

bool is_secret_property(const std::string &name)
{
    /* Java-style key.serializer / key.deserializer name a class, not a key. */
    if (contains_ignoring_case(name.substr(0, 4), "key."))
        return false;
    static const char *const kSecretParts[] = {
        "password", "secret", "key", "token", "credential", "sasl.oauthbearer.config",
    };
    for (const char *part : kSecretParts) {
        if (contains_ignoring_case(name, part))
            return true;
    }
    return false;
}

/*
 * Replaces every secret value the sink was given with "***" in text librdkafka produced
 * (errors, logs): librdkafka quotes values in some messages, and a message that reaches
 * the server log or a status view must never carry a password.
 */
class SecretScrubber
{
  public:
    void add(const char *value)
    {
        if (value == nullptr || value[0] == '\0')
            return;
        secrets_.emplace_back(value);
        /* longest first: a secret that contains another is replaced whole */
        std::stable_sort(
            secrets_.begin(), secrets_.end(),
            [](const std::string &a, const std::string &b) { return a.size() > b.size(); });
    }

    std::string scrub(std::string text) const
    {
        for (const std::string &secret : secrets_) {
            size_t at = 0;
            while ((at = text.find(secret, at)) != std::string::npos) {
                text.replace(at, secret.size(), "***");
                at += 3;
            }
        }
        return text;
    }

  private:
    std::vector<std::string> secrets_;
};

/* ------------------------------------------------------------------------- */
/* Which properties a stream may set                                           */

/* librdkafka's spelling of a boolean false. */
bool is_false(const char *value)
{
    return equals_ignoring_case(value, "false") || equals_ignoring_case(value, "f") ||
           std::strcmp(value, "0") == 0;
}

bool parse_int(const char *value, long *out)
{
    char *end = nullptr;
    long parsed = std::strtol(value, &end, 0);
    if (end == value)
        return false;
    while (*end == ' ')
        ++end;
    if (*end != '\0')
        return false;
    *out = parsed;
    return true;
}

/*
 * The two values walship's kinit command substitutes (see kDefaultProperties) reach a
 * shell: only characters that mean nothing to a shell, and no leading '-' (an option to
 * kinit). Kerberos principals of the form primary/instance@REALM and absolute paths fit.
 */
bool is_plain_kerberos_value(const char *value, bool path)
{
    if (path ? value[0] != '/' : value[0] == '-' || value[0] == '\0')
        return false;
    for (const char *p = value; *p != '\0'; ++p) {
        unsigned char c = static_cast<unsigned char>(*p);
        if (!std::isalnum(c) && std::strchr("._-/@+", c) == nullptr)
            return false;
    }
    return std::strlen(value) <= 4096;
}

/*
 * Refuses what would break walship's guarantees, or the server it runs in. Everything
 * else goes to librdkafka, which validates names and values itself.
 *
 * What could reach a shell, load code, write files or send signals in the server, from
 * the properties of the linked librdkafka (2.0): sasl.kerberos.kinit.cmd (a shell
 * command) and the values it substitutes, plugin.library.paths and ssl.engine.location
 * (libraries), ssl.providers (OpenSSL modules, loaded by name from OpenSSL's own module
 * directory unless given as a path), internal.termination.signal (a signal sent to the
 * server's threads), and the legacy consumer's offset.store.* (a file it writes). The
 * remaining file paths (ssl.*.location, sasl.kerberos.keytab) are only read, as TLS
 * material or by kinit; docs/security.md says who may set them.
 */
bool property_allowed(const std::string &name, const char *value, bool secret, std::string &why)
{
    const std::string prop = quoted(name);
    /* a value read from a file is never quoted back */
    const std::string shown = secret ? std::string("the value given") : quoted(value);
    if (name == "sasl.kerberos.principal" && !is_plain_kerberos_value(value, false)) {
        why = "Kafka property " + prop +
              " must be a plain Kerberos principal (letters, digits and . _ - / @ +, not "
              "starting with -): walship passes it to kinit through a shell";
        return false;
    }
    if (name == "sasl.kerberos.keytab" && !is_plain_kerberos_value(value, true)) {
        why = "Kafka property " + prop +
              " must be an absolute path of letters, digits and . _ - / @ +: walship passes "
              "it to kinit through a shell";
        return false;
    }
    if (name == "enable.idempotence" && is_false(value)) {
        why = "Kafka property " + prop +
              " cannot be false: walship relies on the idempotent producer to deliver "
              "every event once and in order";
        return false;
    }
    if (name == "acks" || name == "request.required.acks") {
        long acks = 0;
        bool all = equals_ignoring_case(value, "all") || (parse_int(value, &acks) && acks == -1);
        if (!all) {
            why = "Kafka property " + prop + " must be \"all\" (or -1), not " + shown +
                  ": walship confirms a transaction to PostgreSQL only once every in-sync "
                  "replica holds it";
            return false;
        }
        return true;
    }
    if (name == "partitioner") {
        if (std::strcmp(value, "murmur2_random") != 0 && std::strcmp(value, "murmur2") != 0) {
            why = "Kafka property " + prop + " must be \"murmur2_random\" or \"murmur2\", not " +
                  shown +
                  ": walship partitions like Java clients do, so that all changes of a row "
                  "land in one partition whoever else writes the topic";
            return false;
        }
        return true;
    }
    if (name == "max.in.flight" || name == "max.in.flight.requests.per.connection") {
        long in_flight = 0;
        if (!parse_int(value, &in_flight) || in_flight > 5) {
            why = "Kafka property " + prop +
                  " must be a whole number from 1 to 5: the idempotent producer keeps order "
                  "only up to 5 requests in flight";
            return false;
        }
        return true;
    }
    if (name == "retries" || name == "message.send.max.retries") {
        long retries = 0;
        if (!parse_int(value, &retries) || retries < 1) {
            why = "Kafka property " + prop +
                  " must be a whole number, at least 1: the idempotent producer needs retries";
            return false;
        }
        return true;
    }
    if (name == "queuing.strategy" && std::strcmp(value, "fifo") != 0) {
        why = "Kafka property " + prop + " must be \"fifo\": events must keep their order";
        return false;
    }
    if (name == "delivery.report.only.error" && !is_false(value)) {
        why = "Kafka property " + prop +
              " cannot be true: the LSN watermark needs a delivery report for every event";
        return false;
    }
    if (name == "enabled_events" || name == "log.queue") {
        why = "Kafka property " + prop +
              " is managed by walship: delivery reports and logs must reach the stream worker";
        return false;
    }
    if (name == "transactional.id" || name == "transaction.timeout.ms") {
        why = "Kafka property " + prop +
              " cannot be set: walship does not use Kafka transactions yet";
        return false;
    }
    if (name == "plugin.library.paths" || name == "ssl.engine.location" ||
        name == "sasl.kerberos.kinit.cmd" || name == "internal.termination.signal") {
        why = "Kafka property " + prop +
              " cannot be set through walship: it would load code, run a command or send "
              "signals inside the PostgreSQL server";
        return false;
    }
    if (name == "ssl.providers" && std::strchr(value, '/') != nullptr) {
        why = "Kafka property " + prop +
              " must name OpenSSL providers, not paths: loading a file would run code "
              "inside the PostgreSQL server";
        return false;
    }
    if (name.compare(0, 13, "offset.store.") == 0) {
        why = "Kafka property " + prop +
              " is a consumer property (the legacy consumer's offset file): walship only "
              "produces, and writes no files through librdkafka";
        return false;
    }
    if (name.compare(0, 5, "test.") == 0) {
        why = "Kafka property " + prop + " is for librdkafka's own tests";
        return false;
    }
    return true;
}

/*
 * librdkafka reads an integer property with strtol and ignores what follows the digits:
 * "6x" is 6, and a max.in.flight of "6x" passes walship's check of it, then breaks the
 * producer. So a value that starts like a number must be one, when librdkafka keeps an
 * integer for it.
 */
bool integer_value_with_junk(rd_kafka_conf_t *conf, const std::string &name, const char *value)
{
    if (!(std::isdigit(static_cast<unsigned char>(value[0])) || value[0] == '-'))
        return false;
    char kept[64];
    size_t size = sizeof(kept);
    if (rd_kafka_conf_get(conf, name.c_str(), kept, &size) != RD_KAFKA_CONF_OK)
        return false;
    const char *p = kept[0] == '-' ? kept + 1 : kept;
    if (*p == '\0')
        return false;
    for (; *p != '\0'; ++p)
        if (!std::isdigit(static_cast<unsigned char>(*p)))
            return false; /* not an integer property */
    char *end = nullptr;
    (void)std::strtoll(value, &end, 10);
    while (*end == ' ')
        ++end;
    return *end != '\0';
}

/* Sets one property on conf, with a message that names it and never shows a secret. */
bool set_property(rd_kafka_conf_t *conf, const SecretScrubber &scrubber, const std::string &name,
                  const char *value, std::string &why, bool secret = false)
{
    char errstr[512];
    rd_kafka_conf_res_t res = rd_kafka_conf_set(conf, name.c_str(), value, errstr, sizeof(errstr));
    if (res == RD_KAFKA_CONF_OK && !integer_value_with_junk(conf, name, value)) {
        return true;
    } else if (res == RD_KAFKA_CONF_OK) {
        why = "invalid value for Kafka property " + quoted(name) +
              (secret || is_secret_property(name) ? std::string() : " " + quoted(value)) +
              ": expected a whole number";
        return false;
    }
    if (res == RD_KAFKA_CONF_UNKNOWN) {
        why = "unknown Kafka property " + quoted(name) +
              ": see librdkafka's CONFIGURATION.md for the properties a producer accepts";
    } else if (secret || is_secret_property(name)) {
        why = "invalid value for Kafka property " + quoted(name) +
              " (the value is not shown: the property holds a secret)";
    } else {
        why = "invalid value for Kafka property " + quoted(name) + ": " + scrubber.scrub(errstr);
    }
    return false;
}

bool check_property(const char *name, const char *value, bool secret,
                    const SecretScrubber &scrubber, rd_kafka_conf_t *conf, std::string &why)
{
    if (name == nullptr || name[0] == '\0') {
        why = "Kafka property without a name";
        return false;
    }
    if (value == nullptr) {
        why = "Kafka property " + quoted(name) + " has no value";
        return false;
    }
    if (property_allowed(name, value, secret, why) &&
        set_property(conf, scrubber, name, value, why, secret))
        return true;
    /* whatever the message quotes, no secret of the stream survives in it */
    why = scrubber.scrub(why);
    return false;
}

struct ConfDeleter {
    void operator()(rd_kafka_conf_t *conf) const
    {
        rd_kafka_conf_destroy(conf);
    }
};
using ConfPtr = std::unique_ptr<rd_kafka_conf_t, ConfDeleter>;

/* ------------------------------------------------------------------------- */
/* Topics                                                                      */

enum class TopicState {
    Unchecked, /* seen for the first time: create it */
    Creating,  /* CreateTopics sent, no answer yet */
    Retrying,  /* creation failed for a reason that passes (broker down): try again later */
    Ready,     /* exists, or we did what we could: produce */
    Refused,   /* cannot be produced to: the stream must be fixed (name, partitions, ...) */
};

struct SinkTopic {
    explicit SinkTopic(const char *topic_name) : name(topic_name) {}

    const std::string name; /* the map's key points here */
    rd_kafka_topic_t *handle = nullptr;
    TopicState state = TopicState::Unchecked;
    int attempts = 0;
    Clock::time_point first_attempt;
    Clock::time_point retry_at;
    std::string refusal;
};

bool is_valid_topic_name(const std::string &name)
{
    if (name.empty() || name.size() > kTopicNameMaxLength || name == "." || name == "..")
        return false;
    return std::all_of(name.begin(), name.end(), [](unsigned char c) {
        return std::isalnum(c) || c == '.' || c == '_' || c == '-';
    });
}

enum class CreationOutcome { Created, Retry, Refuse, ProduceAnyway, Unavailable };

/*
 * What a CreateTopics error means for the stream. Transient trouble is retried (while
 * it lasts, produce answers QUEUE_FULL: the same backpressure a full queue gives).
 * Mistakes only the user can fix refuse the topic. Anything else (no permission to
 * create topics, an old broker, a creation policy) means topics are managed elsewhere:
 * produce, and let Kafka say whether the topic exists. When that holds for the whole
 * cluster (Unavailable), later topics are not even tried.
 */
CreationOutcome classify_creation(rd_kafka_resp_err_t err)
{
    switch (err) {
    case RD_KAFKA_RESP_ERR_NO_ERROR:
    case RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS:
        return CreationOutcome::Created;
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR__TRANSPORT:
    case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
    case RD_KAFKA_RESP_ERR__WAIT_COORD:
    case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
    case RD_KAFKA_RESP_ERR_NOT_CONTROLLER:
    case RD_KAFKA_RESP_ERR_NETWORK_EXCEPTION:
    case RD_KAFKA_RESP_ERR_BROKER_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_THROTTLING_QUOTA_EXCEEDED:
        return CreationOutcome::Retry;
    case RD_KAFKA_RESP_ERR_INVALID_PARTITIONS:
    case RD_KAFKA_RESP_ERR_INVALID_REPLICATION_FACTOR:
    case RD_KAFKA_RESP_ERR_INVALID_REPLICA_ASSIGNMENT:
    case RD_KAFKA_RESP_ERR_INVALID_CONFIG:
    case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
    case RD_KAFKA_RESP_ERR_INVALID_REQUEST:
        return CreationOutcome::Refuse;
    /* Not for this topic only: for no topic of this cluster. */
    case RD_KAFKA_RESP_ERR__UNSUPPORTED_FEATURE:
    case RD_KAFKA_RESP_ERR_UNSUPPORTED_VERSION:
    case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
        return CreationOutcome::Unavailable;
    default:
        return CreationOutcome::ProduceAnyway;
    }
}

struct NewTopicDeleter {
    void operator()(rd_kafka_NewTopic_t *topic) const
    {
        rd_kafka_NewTopic_destroy(topic);
    }
};
struct AdminOptionsDeleter {
    void operator()(rd_kafka_AdminOptions_t *options) const
    {
        rd_kafka_AdminOptions_destroy(options);
    }
};
struct EventDeleter {
    void operator()(rd_kafka_event_t *event) const
    {
        rd_kafka_event_destroy(event);
    }
};

struct LogLine {
    int level;
    std::string text;
};

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

/* The dead-letter record's value: what the event was, never its row. */
std::string dead_letter_value(const DeadLetter &letter, const std::string &table)
{
    std::string out = "{\"table\":";
    if (table.empty())
        out += "null";
    else
        walship::json::append_string(out, table);
    out += ",\"topic\":";
    walship::json::append_string(out, letter.topic);
    out += ",\"commit_lsn\":";
    walship::json::append_string(out, walship::format_lsn(letter.commit_lsn));
    out += ",\"xid\":" + std::to_string(letter.xid);
    out += ",\"size\":" + std::to_string(letter.size);
    out += ",\"key_size\":" + std::to_string(letter.key.size());
    if (letter.key.size() > kDeadLetterMaxKeyBytes)
        out += ",\"key_omitted\":true";
    out += ",\"error\":";
    walship::json::append_string(out, letter.error);
    out += ",\"reason\":";
    walship::json::append_string(out, letter.reason);
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

/* A header value and the number it was formatted from. */
struct HeaderText {
    bool valid = false;
    uint64_t number = 0;
    int length = 0;
    char text[24] = "";

    void set_lsn(uint64_t lsn)
    {
        if (valid && number == lsn)
            return;
        length = std::snprintf(text, sizeof(text), "%" PRIX32 "/%" PRIX32,
                               static_cast<uint32_t>(lsn >> 32), static_cast<uint32_t>(lsn));
        number = lsn;
        valid = true;
    }

    void set_decimal(uint64_t value)
    {
        if (valid && number == value)
            return;
        length = std::snprintf(text, sizeof(text), "%" PRIu64, value);
        number = value;
        valid = true;
    }
};

int64_t unix_micros_now()
{
    using namespace std::chrono;
    return duration_cast<microseconds>(system_clock::now().time_since_epoch()).count();
}

} // namespace

/* ------------------------------------------------------------------------- */
/* The sink                                                                    */

struct ws_sink {
    rd_kafka_t *kafka = nullptr;
    /* CreateTopics results; polled by ws_sink_poll while a creation is under way. */
    rd_kafka_queue_t *admin_results = nullptr;
    walship::DeliveryWatermark watermark;
    /* Never erased before the sink dies: CreateTopics carries a pointer to a topic. Keyed
     * by a view of the topic's own name, so that looking a name up allocates nothing. */
    std::unordered_map<std::string_view, std::unique_ptr<SinkTopic>> topics;
    /* The previous event's topic: a stream's events come in runs of one table, so most
     * events skip even the hash lookup. */
    SinkTopic *last_topic = nullptr;
    int topics_creating = 0;
    int topic_partitions = -1;
    int topic_replication_factor = -1;
    int topic_create_request_timeout_ms = kTopicCreateRequestTimeoutMs;
    int topic_create_budget_ms = kTopicCreateBudgetMs;
    /* The max.message.bytes topics we create get: the producer's message.max.bytes when it
     * is larger than Kafka's default, else empty (the broker's default). */
    std::string topic_max_message_bytes;
    /* queue.buffering.max.kbytes in bytes: librdkafka answers QUEUE_FULL for ever to an
     * event larger than this, so such an event fails instead (0: not known). */
    size_t queue_max_bytes = 0;
    /* This cluster creates no topics for us (no Admin API, no permission, creation that
     * never completes): later topics skip the attempt. */
    bool topic_creation_unavailable = false;
    SecretScrubber scrubber;

    /* Dead letters (ws_sink_config.dead_letter_topic); empty: refused events fail. */
    std::string dead_letter_topic;
    /* batch.size: an event larger than this travels alone in its batch. */
    size_t batch_max_bytes = SIZE_MAX; /* not known: no refusal is certainly one event's */
    /* The tables events are about, interned: a message's opaque holds the index. */
    std::vector<std::string> sources{std::string()};
    std::unordered_map<std::string, uint32_t> source_ids;
    /* Refused by the broker, to be produced to the dead-letter topic at the next poll;
     * their transactions wait for them. */
    std::deque<DeadLetter> dead_letters;

    /* What the callbacks recorded. Fixed buffers, so that a failure is kept even when
     * memory ran out while describing it. */
    ws_status failure_status = WS_OK; /* the first failure wins; it never clears */
    char failure[WS_ERRMSG_SIZE] = "";
    bool fatal = false;
    bool has_last_error = false;
    char last_error[WS_ERRMSG_SIZE] = "";
    std::deque<LogLine> logs;
    uint64_t logs_dropped = 0;
    ws_sink_stats stats{};

    /* The walship.lsn and walship.xid header values of the latest event: all events of a
     * transaction share them, so they are formatted once per transaction, not per event. */
    HeaderText lsn_header;
    HeaderText xid_header;

    ws_sink() = default;
    ws_sink(const ws_sink &) = delete;
    ws_sink &operator=(const ws_sink &) = delete;

    ~ws_sink()
    {
        for (auto &entry : topics) {
            if (entry.second->handle != nullptr)
                rd_kafka_topic_destroy(entry.second->handle);
        }
        if (admin_results != nullptr)
            rd_kafka_queue_destroy(admin_results);
        if (kafka != nullptr) {
            /* "Without waiting": what is still queued or in flight is dropped; the slot
             * has not been confirmed past it, so the next run sends it again. */
            rd_kafka_purge(kafka, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
            rd_kafka_destroy(kafka);
        }
    }

    void record_failure(ws_status status, const char *text)
    {
        if (failure_status != WS_OK)
            return;
        failure_status = status;
        std::snprintf(failure, sizeof(failure), "%s", text);
    }

    void record_failure(const std::string &text)
    {
        record_failure(WS_ERROR, text.c_str());
    }

    void record_out_of_memory()
    {
        record_failure(WS_OUT_OF_MEMORY, "out of memory in the Kafka sink");
    }

    void record_last_error(const char *text)
    {
        std::snprintf(last_error, sizeof(last_error), "%s", text);
        has_last_error = true;
    }

    void add_log(int level, std::string text)
    {
        if (logs.size() >= kMaxQueuedLogLines) {
            logs.pop_front();
            ++logs_dropped;
        }
        logs.push_back(LogLine{level, scrubber.scrub(std::move(text))});
    }

    void check_fatal()
    {
        if (fatal)
            return;
        char reason[512];
        rd_kafka_resp_err_t err = rd_kafka_fatal_error(kafka, reason, sizeof(reason));
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
            return;
        fatal = true;
        watermark.halt();
        std::string text = "fatal Kafka producer error: " + scrubber.scrub(reason) + " (" +
                           rd_kafka_err2name(err) + ")";
        record_failure(text);
        record_last_error(text.c_str());
    }

    /* Stamps stats.last_ack_time_us when delivery reports served in its scope acknowledged
     * something: one clock read per poll instead of one per event. */
    class AckClock
    {
      public:
        explicit AckClock(ws_sink &sink) : sink_(sink), acked_(acknowledged(sink)) {}
        ~AckClock()
        {
            if (acknowledged(sink_) != acked_)
                sink_.stats.last_ack_time_us = unix_micros_now();
        }
        AckClock(const AckClock &) = delete;
        AckClock &operator=(const AckClock &) = delete;

      private:
        static uint64_t acknowledged(const ws_sink &sink)
        {
            return sink.stats.events_acked + sink.stats.events_dead_lettered;
        }

        ws_sink &sink_;
        uint64_t acked_;
    };

    enum class Readiness { Ready, Wait, Refused };

    SinkTopic &topic(const char *name);
    /* Creates the topic if needed and its handle: Wait while it is being created. */
    Readiness prepare_topic(SinkTopic &topic, std::string &why);
    uint32_t source_id(const char *table);
    ws_produce_result produce_dead_letter(const DeadLetter &letter, std::string &why);
    void write_dead_letters();
    void start_topic_creation(SinkTopic &topic);
    void serve_admin_results(int timeout_ms);
    void finish_topic_creation(SinkTopic &topic, rd_kafka_resp_err_t err, const char *reason);
    void serve(int timeout_ms);
};

namespace
{

/* ------------------------------------------------------------------------- */
/* librdkafka callbacks: served on the worker's thread; they only record.       */

void on_delivery(rd_kafka_t *, const rd_kafka_message_t *message, void *opaque)
{
    ws_sink *sink = static_cast<ws_sink *>(opaque);
    const MessageTag tag = MessageTag::of(message->_private);
    try {
        if (message->err == RD_KAFKA_RESP_ERR_NO_ERROR && message->offset < 0) {
            /*
             * No offset: librdkafka 2.0 acknowledged the event implicitly, because a
             * later request of the partition succeeded after this one failed in a way
             * that left it possibly persisted. For the first requests of a producer id
             * on a partition that inference is wrong: the broker accepts any first
             * sequence number of a producer it does not know, so the later request
             * succeeds while this one was never stored (fixed in librdkafka 2.3,
             * #4438). Seen here: an event missing from Kafka after a stream restart.
             * Never confirm such an event: send its transaction again.
             */
            sink->watermark.event_failed(tag.txn);
            sink->record_failure(
                "Kafka acknowledged an event to topic " +
                quoted(rd_kafka_topic_name(message->rkt)) + " [" +
                std::to_string(message->partition) +
                "] without an offset (librdkafka inferred it from a later request after an "
                "uncertain failure, which cannot prove it was stored): the stream restarts from "
                "its slot and sends the transaction again");
            return;
        }
        if (message->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            if (!sink->watermark.event_acked(tag.txn)) {
                sink->record_failure("delivery report for an event of no pending transaction "
                                     "(a walship bug)");
                return;
            }
            if (tag.dead_letter)
                ++sink->stats.events_dead_lettered;
            else
                ++sink->stats.events_acked; /* the time: serve() reads the clock once per poll */
            sink->has_last_error = false;
            return;
        }
        const size_t size = message->key_len + message->len;
        std::string text =
            std::string("could not deliver ") + (tag.dead_letter ? "a dead letter" : "an event") +
            " to Kafka topic " + quoted(rd_kafka_topic_name(message->rkt)) + ": " +
            rd_kafka_err2str(message->err) + " (" + rd_kafka_err2name(message->err) + ")";
        if (!tag.dead_letter && is_size_refusal(message->err) && !sink->dead_letter_topic.empty() &&
            size > sink->batch_max_bytes) {
            /* Alone in its batch: the refusal is this event's. Its transaction keeps
             * waiting, for the dead letter now. */
            sink->dead_letters.push_back(DeadLetter{
                tag.txn, tag.source, rd_kafka_topic_name(message->rkt), message->key != nullptr,
                message->key != nullptr
                    ? std::string(static_cast<const char *>(message->key), message->key_len)
                    : std::string(),
                size, header_lsn(message), header_xid(message), rd_kafka_err2name(message->err),
                std::move(text)});
            return;
        }
        sink->watermark.event_failed(tag.txn);
        if (is_size_refusal(message->err)) {
            text += "; the event (" + std::to_string(size) +
                    " bytes) or the batch it travelled in is larger than the topic's "
                    "max.message.bytes (default: the broker's message.max.bytes): raise the "
                    "topic's max.message.bytes (kafka-configs --alter --add-config "
                    "max.message.bytes=...) to at least the producer's message.max.bytes";
            if (tag.dead_letter)
                ;
            else if (sink->dead_letter_topic.empty())
                text += ", or set the stream option on_refused to dead_letter";
            else
                text += " (an event no larger than batch.size, " +
                        std::to_string(sink->batch_max_bytes) +
                        " bytes, shares its batch: its refusal may be another event's, so it is "
                        "not dead-lettered)";
        }
        sink->record_failure(sink->scrubber.scrub(text));
    } catch (...) {
        /* The event's fate is unknown now: never confirm past it. */
        sink->watermark.event_failed(tag.txn);
        sink->record_out_of_memory();
    }
}

void on_error(rd_kafka_t *, int err, const char *reason, void *opaque)
{
    ws_sink *sink = static_cast<ws_sink *>(opaque);
    try {
        if (err == RD_KAFKA_RESP_ERR__FATAL) {
            sink->check_fatal();
            return;
        }
        std::string text = sink->scrubber.scrub(reason != nullptr ? reason : "") + " (" +
                           rd_kafka_err2name(static_cast<rd_kafka_resp_err_t>(err)) + ")";
        sink->record_last_error(text.c_str());
    } catch (...) {
        sink->record_last_error("Kafka error (out of memory while recording it)");
    }
}

void on_log(const rd_kafka_t *kafka, int level, const char *facility, const char *line)
{
    ws_sink *sink = static_cast<ws_sink *>(rd_kafka_opaque(kafka));
    if (sink == nullptr)
        return;
    try {
        sink->add_log(level, std::string(facility) + ": " + line);
    } catch (...) {
        ++sink->logs_dropped;
    }
}

} // namespace

/* ------------------------------------------------------------------------- */
/* Topic creation                                                              */

SinkTopic &ws_sink::topic(const char *name)
{
    if (last_topic != nullptr && last_topic->name == name)
        return *last_topic;
    auto found = topics.find(name);
    if (found == topics.end()) {
        auto created = std::make_unique<SinkTopic>(name);
        found = topics.emplace(created->name, std::move(created)).first;
    }
    last_topic = found->second.get();
    return *last_topic;
}

ws_sink::Readiness ws_sink::prepare_topic(SinkTopic &topic, std::string &why)
{
    if (topic.state == TopicState::Unchecked) {
        if (!is_valid_topic_name(topic.name)) {
            topic.state = TopicState::Refused;
            topic.refusal = "invalid Kafka topic name " + quoted(topic.name) +
                            ": Kafka allows only ASCII letters, digits, '.', '_' and '-', "
                            "at most 249 of them";
        } else if (topic_creation_unavailable) {
            topic.state = TopicState::Ready;
        } else {
            start_topic_creation(topic);
        }
    }
    if (topic.state == TopicState::Creating)
        serve_admin_results(0);
    if (topic.state == TopicState::Retrying && Clock::now() >= topic.retry_at)
        start_topic_creation(topic);
    switch (topic.state) {
    case TopicState::Creating:
    case TopicState::Retrying:
        why = "waiting for Kafka topic " + quoted(topic.name) + " to be created";
        return Readiness::Wait;
    case TopicState::Refused:
        why = topic.refusal;
        return Readiness::Refused;
    case TopicState::Unchecked:
    case TopicState::Ready:
        break;
    }
    /* Only now: a topic handle makes librdkafka ask for the topic's metadata, which has
     * the broker auto-create it (with its defaults) if it may, racing CreateTopics. */
    if (topic.handle == nullptr) {
        topic.handle = rd_kafka_topic_new(kafka, topic.name.c_str(), nullptr);
        if (topic.handle == nullptr) {
            topic.state = TopicState::Refused;
            topic.refusal = "could not use Kafka topic " + quoted(topic.name) + ": " +
                            rd_kafka_err2str(rd_kafka_last_error());
            why = topic.refusal;
            return Readiness::Refused;
        }
    }
    return Readiness::Ready;
}

uint32_t ws_sink::source_id(const char *table)
{
    if (table == nullptr || table[0] == '\0')
        return 0;
    if (sources.size() > 1 && sources.back() == table)
        return static_cast<uint32_t>(sources.size() - 1);
    auto found = source_ids.find(table);
    if (found != source_ids.end())
        return found->second;
    if (sources.size() >= kOpaqueMaxSources)
        return 0; /* a dead letter would name no table; nothing else depends on it */
    sources.emplace_back(table);
    const auto id = static_cast<uint32_t>(sources.size() - 1);
    source_ids.emplace(sources.back(), id);
    return id;
}

/*
 * Produces the dead letter of a refused event, tagged with the event's transaction, so
 * that the watermark waits for its acknowledgement. QUEUE_FULL while the dead-letter
 * topic is being created or the queue is full: call again.
 */
ws_produce_result ws_sink::produce_dead_letter(const DeadLetter &letter, std::string &why)
{
    SinkTopic &dlq = topic(dead_letter_topic.c_str());
    switch (prepare_topic(dlq, why)) {
    case Readiness::Wait:
        return WS_PRODUCE_QUEUE_FULL;
    case Readiness::Refused:
        why = "could not write the dead letter of a refused event (" + letter.reason + "): " + why;
        return WS_PRODUCE_FAILED;
    case Readiness::Ready:
        break;
    }
    const std::string &table = letter.source < sources.size() ? sources[letter.source] : "";
    const std::string value = dead_letter_value(letter, table);
    HeaderText lsn;
    HeaderText xid;
    lsn.set_lsn(letter.commit_lsn);
    xid.set_decimal(letter.xid);
    rd_kafka_resp_err_t err = rd_kafka_producev(
        kafka, RD_KAFKA_V_RKT(dlq.handle), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_KEY(
            letter.has_key && letter.key.size() <= kDeadLetterMaxKeyBytes ? letter.key.data()
                                                                          : nullptr,
            letter.has_key && letter.key.size() <= kDeadLetterMaxKeyBytes ? letter.key.size() : 0),
        RD_KAFKA_V_VALUE(const_cast<char *>(value.data()), value.size()),
        RD_KAFKA_V_HEADER("walship.lsn", lsn.text, lsn.length),
        RD_KAFKA_V_HEADER("walship.xid", xid.text, xid.length),
        RD_KAFKA_V_OPAQUE((MessageTag{letter.txn, letter.source, true}.opaque())), RD_KAFKA_V_END);
    if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        why = "Kafka producer queue is full (" + std::to_string(watermark.in_flight()) +
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
    try {
        add_log(kLogWarning,
                "dead-lettered an event of " +
                    (table.empty() ? std::string("no table") : "table " + quoted(table)) +
                    " with commit LSN " + walship::format_lsn(letter.commit_lsn) + " (" +
                    std::to_string(letter.size) + " bytes) to Kafka topic " + quoted(dlq.name) +
                    ": " + letter.reason);
    } catch (...) {
        ++logs_dropped; /* produced: the caller's bookkeeping must follow, whatever the log */
    }
    return WS_PRODUCE_OK;
}

/* Dead letters of events the broker refused, in the order of the refusals. */
void ws_sink::write_dead_letters()
{
    while (!dead_letters.empty() && failure_status == WS_OK) {
        std::string why;
        const DeadLetter &letter = dead_letters.front();
        ws_produce_result result = produce_dead_letter(letter, why);
        if (result == WS_PRODUCE_QUEUE_FULL)
            return;
        if (result == WS_PRODUCE_FAILED) {
            watermark.event_failed(letter.txn);
            record_failure(scrubber.scrub(why));
        }
        dead_letters.pop_front();
    }
}

void ws_sink::start_topic_creation(SinkTopic &topic)
{
    const std::string &name = topic.name;
    char errstr[512];
    std::unique_ptr<rd_kafka_NewTopic_t, NewTopicDeleter> new_topic(rd_kafka_NewTopic_new(
        name.c_str(), topic_partitions, topic_replication_factor, errstr, sizeof(errstr)));
    if (!new_topic) {
        topic.state = TopicState::Refused;
        topic.refusal = "could not create Kafka topic " + quoted(name) + ": " + errstr;
        return;
    }
    if (!topic_max_message_bytes.empty()) {
        rd_kafka_resp_err_t err = rd_kafka_NewTopic_set_config(new_topic.get(), "max.message.bytes",
                                                               topic_max_message_bytes.c_str());
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            topic.state = TopicState::Refused;
            topic.refusal = "could not set max.message.bytes for Kafka topic " + quoted(name) +
                            ": " + rd_kafka_err2str(err);
            return;
        }
    }
    std::unique_ptr<rd_kafka_AdminOptions_t, AdminOptionsDeleter> options(
        rd_kafka_AdminOptions_new(kafka, RD_KAFKA_ADMIN_OP_CREATETOPICS));
    if (!options ||
        rd_kafka_AdminOptions_set_operation_timeout(
            options.get(), topic_create_request_timeout_ms / 2, errstr, sizeof(errstr)) ||
        rd_kafka_AdminOptions_set_request_timeout(options.get(), topic_create_request_timeout_ms,
                                                  errstr, sizeof(errstr))) {
        topic.state = TopicState::Refused;
        topic.refusal = "could not prepare the creation of Kafka topic " + quoted(name);
        return;
    }
    rd_kafka_AdminOptions_set_opaque(options.get(), &topic);
    rd_kafka_NewTopic_t *request[] = {new_topic.get()};
    rd_kafka_CreateTopics(kafka, request, 1, options.get(), admin_results);
    topic.state = TopicState::Creating;
    if (topic.attempts++ == 0)
        topic.first_attempt = Clock::now();
    ++topics_creating;
}

void ws_sink::finish_topic_creation(SinkTopic &topic, rd_kafka_resp_err_t err, const char *reason)
{
    const std::string &name = topic.name;
    --topics_creating;
    std::string why =
        scrubber.scrub(reason != nullptr && reason[0] != '\0' ? reason : rd_kafka_err2str(err)) +
        " (" + rd_kafka_err2name(err) + ")";
    switch (classify_creation(err)) {
    case CreationOutcome::Created:
        topic.state = TopicState::Ready;
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            add_log(kLogInfo,
                    "created Kafka topic " + quoted(name) + " (partitions: " +
                        (topic_partitions < 0 ? std::string("broker default")
                                              : std::to_string(topic_partitions)) +
                        ", replication factor: " +
                        (topic_replication_factor < 0 ? std::string("broker default")
                                                      : std::to_string(topic_replication_factor)) +
                        ")");
        }
        return;
    case CreationOutcome::Retry: {
        /* A cluster that answered metadata (it named a controller) but does not complete
         * the creation (no reachable controller, a proxy without the Admin API) would
         * stall the stream for good: after the budget, produce anyway. */
        const bool cluster_answers = rd_kafka_controllerid(kafka, 0) != -1;
        const auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(
            Clock::now() - topic.first_attempt);
        if (cluster_answers && waited.count() >= topic_create_budget_ms) {
            topic.state = TopicState::Ready;
            topic_creation_unavailable = true;
            add_log(kLogWarning, "could not create Kafka topic " + quoted(name) + " in " +
                                     std::to_string(waited.count()) + " ms (" +
                                     std::to_string(topic.attempts) + " attempts): " + why +
                                     "; producing to it anyway, it must exist already or be "
                                     "created by the broker; other topics are not created "
                                     "either");
            return;
        }
        int backoff = kTopicCreateFirstBackoffMs;
        for (int i = 1; i < topic.attempts && backoff < kTopicCreateMaxBackoffMs; ++i)
            backoff *= 2;
        backoff = std::min(backoff, kTopicCreateMaxBackoffMs);
        topic.state = TopicState::Retrying;
        topic.retry_at = Clock::now() + std::chrono::milliseconds(backoff);
        add_log(kLogWarning, "could not create Kafka topic " + quoted(name) + " (attempt " +
                                 std::to_string(topic.attempts) + "): " + why +
                                 "; trying again in " + std::to_string(backoff) + " ms");
        return;
    }
    case CreationOutcome::Refuse:
        topic.state = TopicState::Refused;
        topic.refusal = "could not create Kafka topic " + quoted(name) + ": " + why;
        return;
    case CreationOutcome::ProduceAnyway:
        topic.state = TopicState::Ready;
        add_log(kLogWarning, "could not create Kafka topic " + quoted(name) + ": " + why +
                                 "; producing to it anyway, it must exist already or be "
                                 "created by the broker");
        return;
    case CreationOutcome::Unavailable:
        topic.state = TopicState::Ready;
        topic_creation_unavailable = true;
        add_log(kLogWarning, "could not create Kafka topic " + quoted(name) + ": " + why +
                                 "; producing to it anyway, it must exist already or be "
                                 "created by the broker; other topics are not created either");
        return;
    }
}

void ws_sink::serve_admin_results(int timeout_ms)
{
    while (topics_creating > 0) {
        std::unique_ptr<rd_kafka_event_t, EventDeleter> event(
            rd_kafka_queue_poll(admin_results, timeout_ms));
        if (!event)
            return;
        timeout_ms = 0;
        if (rd_kafka_event_type(event.get()) != RD_KAFKA_EVENT_CREATETOPICS_RESULT)
            continue;
        auto *topic = static_cast<SinkTopic *>(rd_kafka_event_opaque(event.get()));
        if (topic == nullptr || topic->state != TopicState::Creating)
            continue;
        const rd_kafka_CreateTopics_result_t *result =
            rd_kafka_event_CreateTopics_result(event.get());
        size_t count = 0;
        const rd_kafka_topic_result_t **results =
            result != nullptr ? rd_kafka_CreateTopics_result_topics(result, &count) : nullptr;
        if (rd_kafka_event_error(event.get()) != RD_KAFKA_RESP_ERR_NO_ERROR || count == 0) {
            /* The request as a whole failed (timeout, no controller, not supported). */
            finish_topic_creation(*topic, rd_kafka_event_error(event.get()),
                                  rd_kafka_event_error_string(event.get()));
        } else {
            finish_topic_creation(*topic, rd_kafka_topic_result_error(results[0]),
                                  rd_kafka_topic_result_error_string(results[0]));
        }
    }
}

/*
 * rd_kafka_poll for up to timeout_ms, returning early once something was served, like
 * rd_kafka_poll itself. While a topic is being created, its answer arrives on another
 * queue: wait in short slices on both so that the caller retries its produce promptly.
 */
void ws_sink::serve(int timeout_ms)
{
    const AckClock ack_clock(*this);
    if (timeout_ms < 0 || failure_status != WS_OK)
        timeout_ms = 0;
    const Clock::time_point deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
        if (topics_creating == 0) {
            auto remaining =
                std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
            rd_kafka_poll(kafka, static_cast<int>(std::max<int64_t>(remaining.count(), 0)));
            return;
        }
        int creating = topics_creating;
        auto remaining =
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        int slice =
            static_cast<int>(std::min<int64_t>(std::max<int64_t>(remaining.count(), 0), 10));
        int served = rd_kafka_poll(kafka, slice);
        serve_admin_results(0);
        if (served > 0 || topics_creating < creating || Clock::now() >= deadline)
            return;
    }
}

rd_kafka_t *walship::sink_kafka_handle(ws_sink *sink)
{
    return sink->kafka;
}

void walship::sink_set_topic_creation_limits(ws_sink *sink, int request_timeout_ms, int budget_ms)
{
    sink->topic_create_request_timeout_ms = request_timeout_ms;
    sink->topic_create_budget_ms = budget_ms;
}

/* ------------------------------------------------------------------------- */
/* The C boundary                                                              */

extern "C" {

bool ws_sink_property_is_secret(const char *name)
{
    if (name == nullptr)
        return false;
    try {
        return is_secret_property(name);
    } catch (...) {
        return true; /* when in doubt, hide */
    }
}

ws_status ws_sink_check_property(const char *name, const char *value, bool secret, char *errmsg)
{
    try {
        ConfPtr conf(rd_kafka_conf_new());
        SecretScrubber scrubber;
        if (secret || (name != nullptr && is_secret_property(name)))
            scrubber.add(value);
        std::string why;
        if (!check_property(name, value, secret, scrubber, conf.get(), why)) {
            write_errmsg(errmsg, why);
            return WS_ERROR;
        }
        return WS_OK;
    } catch (const std::bad_alloc &) {
        write_errmsg(errmsg, "out of memory");
        return WS_OUT_OF_MEMORY;
    } catch (...) {
        write_errmsg(errmsg, "unexpected error while checking a Kafka property");
        return WS_ERROR;
    }
}

ws_sink *ws_sink_create(const ws_sink_config *config, char *errmsg)
{
    try {
        if (config == nullptr) {
            write_errmsg(errmsg, "no Kafka sink configuration");
            return nullptr;
        }
        if (config->nprops < 0 || (config->nprops > 0 && (config->prop_names == nullptr ||
                                                          config->prop_values == nullptr))) {
            write_errmsg(errmsg, "invalid list of Kafka properties");
            return nullptr;
        }
        if (config->topic_partitions == 0 || config->topic_partitions < -1) {
            write_errmsg(errmsg, "topic partitions must be at least 1, or -1 for the broker's "
                                 "default, not " +
                                     std::to_string(config->topic_partitions));
            return nullptr;
        }
        if (config->topic_replication_factor == 0 || config->topic_replication_factor < -1 ||
            config->topic_replication_factor > INT16_MAX) {
            write_errmsg(errmsg, "topic replication factor must be at least 1, or -1 for the "
                                 "broker's default, not " +
                                     std::to_string(config->topic_replication_factor));
            return nullptr;
        }

        std::unique_ptr<ws_sink> sink(new ws_sink());
        if (config->dead_letter_topic != nullptr) {
            sink->dead_letter_topic = config->dead_letter_topic;
            if (!is_valid_topic_name(sink->dead_letter_topic)) {
                write_errmsg(errmsg, "invalid dead-letter topic name " +
                                         quoted(sink->dead_letter_topic) +
                                         ": Kafka allows only ASCII letters, digits, '.', '_' "
                                         "and '-', at most 249 of them");
                return nullptr;
            }
        }
        sink->topic_partitions = config->topic_partitions;
        sink->topic_replication_factor = config->topic_replication_factor;
        auto secret = [config](int i) {
            return (config->prop_secret != nullptr && config->prop_secret[i]) ||
                   (config->prop_names[i] != nullptr && is_secret_property(config->prop_names[i]));
        };
        for (int i = 0; i < config->nprops; ++i) {
            if (secret(i))
                sink->scrubber.add(config->prop_values[i]);
        }

        ConfPtr conf(rd_kafka_conf_new());
        std::string why;
        bool has_bootstrap =
            config->bootstrap_servers != nullptr && config->bootstrap_servers[0] != '\0';
        if (has_bootstrap && !set_property(conf.get(), sink->scrubber, "bootstrap.servers",
                                           config->bootstrap_servers, why)) {
            write_errmsg(errmsg, why);
            return nullptr;
        }
        for (const DefaultProperty &property : kDefaultProperties) {
            if (!set_property(conf.get(), sink->scrubber, property.name, property.value, why)) {
                write_errmsg(errmsg, "walship's default for " + why);
                return nullptr;
            }
        }
        for (int i = 0; i < config->nprops; ++i) {
            const char *name = config->prop_names[i];
            if (name != nullptr && (std::strcmp(name, "bootstrap.servers") == 0 ||
                                    std::strcmp(name, "metadata.broker.list") == 0)) {
                if (has_bootstrap) {
                    write_errmsg(errmsg, "conflicting or redundant options: bootstrap servers "
                                         "given both as the stream's servers and as Kafka "
                                         "property " +
                                             quoted(name));
                    return nullptr;
                }
                has_bootstrap = true;
            }
            if (!check_property(name, config->prop_values[i], secret(i), sink->scrubber, conf.get(),
                                why)) {
                write_errmsg(errmsg, why);
                return nullptr;
            }
        }
        if (!has_bootstrap) {
            write_errmsg(errmsg, "no Kafka bootstrap servers given");
            return nullptr;
        }
        /* Topics we create accept what the producer may send (see kDefaultProperties). */
        char max_message_bytes[32];
        size_t max_message_bytes_size = sizeof(max_message_bytes);
        if (rd_kafka_conf_get(conf.get(), "message.max.bytes", max_message_bytes,
                              &max_message_bytes_size) == RD_KAFKA_CONF_OK &&
            std::strtoll(max_message_bytes, nullptr, 10) > kKafkaDefaultMaxMessageBytes)
            sink->topic_max_message_bytes = max_message_bytes;
        char queue_max_kbytes[32];
        size_t queue_max_kbytes_size = sizeof(queue_max_kbytes);
        if (rd_kafka_conf_get(conf.get(), "queue.buffering.max.kbytes", queue_max_kbytes,
                              &queue_max_kbytes_size) == RD_KAFKA_CONF_OK)
            sink->queue_max_bytes =
                static_cast<size_t>(std::strtoull(queue_max_kbytes, nullptr, 10)) * 1024;
        char batch_size[32];
        size_t batch_size_size = sizeof(batch_size);
        if (rd_kafka_conf_get(conf.get(), "batch.size", batch_size, &batch_size_size) ==
            RD_KAFKA_CONF_OK)
            sink->batch_max_bytes = static_cast<size_t>(std::strtoull(batch_size, nullptr, 10));
        /* After the stream's properties: these make the sink work, they are not tunable. */
        if (!set_property(conf.get(), sink->scrubber, "log.queue", "true", why)) {
            write_errmsg(errmsg, why);
            return nullptr;
        }
        rd_kafka_conf_set_opaque(conf.get(), sink.get());
        rd_kafka_conf_set_dr_msg_cb(conf.get(), on_delivery);
        rd_kafka_conf_set_error_cb(conf.get(), on_error);
        rd_kafka_conf_set_log_cb(conf.get(), on_log);

        char errstr[512];
        sink->kafka = rd_kafka_new(RD_KAFKA_PRODUCER, conf.get(), errstr, sizeof(errstr));
        if (sink->kafka == nullptr) {
            write_errmsg(errmsg,
                         "could not create the Kafka producer: " + sink->scrubber.scrub(errstr));
            return nullptr;
        }
        conf.release(); /* rd_kafka_new took it */

        /* Logs are queued by librdkafka's threads and served by rd_kafka_poll on ours. */
        rd_kafka_resp_err_t err = rd_kafka_set_log_queue(sink->kafka, nullptr);
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            write_errmsg(errmsg, std::string("could not route librdkafka's logs to the stream "
                                             "worker: ") +
                                     rd_kafka_err2str(err));
            return nullptr;
        }
        sink->admin_results = rd_kafka_queue_new(sink->kafka);
        if (sink->admin_results == nullptr) {
            write_errmsg(errmsg, "could not create the queue for topic creation results");
            return nullptr;
        }
        return sink.release();
    } catch (const std::bad_alloc &) {
        write_errmsg(errmsg, "out of memory while creating the Kafka sink");
        return nullptr;
    } catch (...) {
        write_errmsg(errmsg, "unexpected error while creating the Kafka sink");
        return nullptr;
    }
}

ws_status ws_sink_check_config(const ws_sink_config *config, char *errmsg)
{
    ws_sink *sink = ws_sink_create(config, errmsg);
    if (sink == nullptr)
        return WS_ERROR;
    ws_sink_destroy(sink);
    return WS_OK;
}

void ws_sink_destroy(ws_sink *sink)
{
    try {
        delete sink;
    } catch (...) {
        /* A destructor that throws would terminate anyway; nothing to report to. */
    }
}

void ws_sink_begin_txn(ws_sink *sink, uint64_t commit_lsn)
{
    if (sink == nullptr)
        return;
    try {
        std::string why;
        if (!sink->watermark.begin(commit_lsn, why))
            sink->record_failure("walship bug: " + why);
    } catch (...) {
        sink->record_out_of_memory();
    }
}

void ws_sink_end_txn(ws_sink *sink, uint64_t commit_lsn)
{
    if (sink == nullptr)
        return;
    try {
        std::string why;
        if (!sink->watermark.end(commit_lsn, why))
            sink->record_failure("walship bug: " + why);
    } catch (...) {
        sink->record_out_of_memory();
    }
}

ws_produce_result ws_sink_produce(ws_sink *sink, const char *topic_name, const char *table,
                                  const uint8_t *key, size_t keylen, const uint8_t *value,
                                  size_t valuelen, uint64_t commit_lsn, uint32_t xid, char *errmsg)
{
    if (sink == nullptr) {
        write_errmsg(errmsg, "no Kafka sink");
        return WS_PRODUCE_FAILED;
    }
    try {
        if (sink->failure_status != WS_OK) {
            write_errmsg(errmsg, sink->failure);
            return WS_PRODUCE_FAILED;
        }
        if (!sink->watermark.has_open_transaction() ||
            sink->watermark.open_commit_lsn() != commit_lsn) {
            std::string why = "walship bug: event with commit LSN " +
                              walship::format_lsn(commit_lsn) + " produced " +
                              (sink->watermark.has_open_transaction()
                                   ? "inside the transaction with commit LSN " +
                                         walship::format_lsn(sink->watermark.open_commit_lsn())
                                   : std::string("outside a transaction"));
            sink->watermark.fail_open_transaction();
            sink->record_failure(why);
            write_errmsg(errmsg, why);
            return WS_PRODUCE_FAILED;
        }
        if (topic_name == nullptr) {
            write_errmsg(errmsg, "event without a Kafka topic");
            sink->watermark.fail_open_transaction();
            sink->record_failure(WS_ERROR, errmsg != nullptr ? errmsg : "event without a topic");
            return WS_PRODUCE_FAILED;
        }
        const walship::DeliveryWatermark::TransactionId txn = sink->watermark.open_transaction();
        if (txn > kOpaqueTxnMask) {
            /* a trillion transactions in one worker's life: start again from the slot */
            sink->watermark.fail_open_transaction();
            sink->record_failure("transaction ids of this Kafka producer are used up; the "
                                 "stream restarts");
            write_errmsg(errmsg, sink->failure);
            return WS_PRODUCE_FAILED;
        }

        SinkTopic &topic = sink->topic(topic_name);
        std::string why;
        switch (sink->prepare_topic(topic, why)) {
        case ws_sink::Readiness::Wait:
            write_errmsg(errmsg, why);
            return WS_PRODUCE_QUEUE_FULL;
        case ws_sink::Readiness::Refused:
            sink->watermark.fail_open_transaction();
            sink->record_failure(why);
            write_errmsg(errmsg, why);
            return WS_PRODUCE_FAILED;
        case ws_sink::Readiness::Ready:
            break;
        }

        /* A NULL value is a tombstone; a NULL key is no key. */
        const size_t key_size = key != nullptr ? keylen : 0;
        const size_t value_size = value != nullptr ? valuelen : 0;
        const MessageTag tag{txn, sink->source_id(table), false};
        /* The producer's own refusals of this very event: a dead letter, or a failure. */
        auto refuse = [&](rd_kafka_resp_err_t err, std::string text) {
            if (!sink->dead_letter_topic.empty()) {
                DeadLetter letter{txn,
                                  tag.source,
                                  topic.name,
                                  key != nullptr,
                                  key != nullptr
                                      ? std::string(reinterpret_cast<const char *>(key), key_size)
                                      : std::string(),
                                  key_size + value_size,
                                  commit_lsn,
                                  xid,
                                  rd_kafka_err2name(err),
                                  std::move(text)};
                std::string failed;
                ws_produce_result result = sink->produce_dead_letter(letter, failed);
                if (result == WS_PRODUCE_OK) {
                    sink->watermark.event_produced();
                    ++sink->stats.events_produced;
                    return WS_PRODUCE_OK;
                }
                if (result == WS_PRODUCE_QUEUE_FULL) {
                    write_errmsg(errmsg, failed);
                    return WS_PRODUCE_QUEUE_FULL;
                }
                text = failed;
            } else {
                text += "; or set the stream option on_refused to dead_letter";
            }
            sink->watermark.fail_open_transaction();
            sink->record_failure(text);
            write_errmsg(errmsg, sink->failure);
            return WS_PRODUCE_FAILED;
        };
        if (sink->queue_max_bytes > 0 && key_size + value_size > sink->queue_max_bytes)
            return refuse(RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE,
                          "could not produce an event to Kafka topic " + quoted(topic.name) +
                              ": the event (" + std::to_string(key_size + value_size) +
                              " bytes) is larger than the producer queue: raise the Kafka "
                              "property \"queue.buffering.max.kbytes\" (" +
                              std::to_string(sink->queue_max_bytes / 1024) +
                              ") above \"message.max.bytes\" or stop streaming this table");
        sink->lsn_header.set_lsn(commit_lsn);
        sink->xid_header.set_decimal(xid);
        rd_kafka_resp_err_t err = rd_kafka_producev(
            sink->kafka, RD_KAFKA_V_RKT(topic.handle), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_KEY(key, key_size),
            RD_KAFKA_V_VALUE(const_cast<uint8_t *>(value), value_size),
            RD_KAFKA_V_HEADER("walship.lsn", sink->lsn_header.text, sink->lsn_header.length),
            RD_KAFKA_V_HEADER("walship.xid", sink->xid_header.text, sink->xid_header.length),
            RD_KAFKA_V_OPAQUE(tag.opaque()), RD_KAFKA_V_END);
        if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            write_errmsg(errmsg, "Kafka producer queue is full (" +
                                     std::to_string(sink->watermark.in_flight()) +
                                     " events in flight)");
            return WS_PRODUCE_QUEUE_FULL;
        }
        if (err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE)
            return refuse(err, "could not produce an event to Kafka topic " + quoted(topic.name) +
                                   ": " + rd_kafka_err2str(err) + " (" + rd_kafka_err2name(err) +
                                   "); the event (" + std::to_string(key_size + value_size) +
                                   " bytes) is larger than the Kafka property "
                                   "\"message.max.bytes\": raise it (and the topic's "
                                   "max.message.bytes) or stop streaming this table");
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            sink->check_fatal();
            why = "could not produce an event to Kafka topic " + quoted(topic.name) + ": " +
                  rd_kafka_err2str(err) + " (" + rd_kafka_err2name(err) + ")";
            sink->watermark.fail_open_transaction();
            sink->record_failure(why);
            write_errmsg(errmsg, sink->failure);
            return WS_PRODUCE_FAILED;
        }
        sink->watermark.event_produced();
        ++sink->stats.events_produced;
        sink->stats.bytes_produced += key_size + value_size;
        return WS_PRODUCE_OK;
    } catch (const std::bad_alloc &) {
        sink->watermark.fail_open_transaction();
        sink->record_out_of_memory();
        write_errmsg(errmsg, "out of memory while producing to Kafka");
        return WS_PRODUCE_FAILED;
    } catch (...) {
        sink->watermark.fail_open_transaction();
        sink->record_failure(WS_ERROR, "unexpected error while producing to Kafka");
        write_errmsg(errmsg, "unexpected error while producing to Kafka");
        return WS_PRODUCE_FAILED;
    }
}

ws_status ws_sink_poll(ws_sink *sink, int timeout_ms, char *errmsg)
{
    if (sink == nullptr) {
        write_errmsg(errmsg, "no Kafka sink");
        return WS_ERROR;
    }
    try {
        sink->serve(timeout_ms);
        sink->write_dead_letters();
        sink->check_fatal();
        if (sink->failure_status != WS_OK) {
            write_errmsg(errmsg, sink->failure);
            return sink->failure_status;
        }
        return WS_OK;
    } catch (const std::bad_alloc &) {
        sink->record_out_of_memory();
        write_errmsg(errmsg, "out of memory while serving Kafka");
        return WS_OUT_OF_MEMORY;
    } catch (...) {
        sink->record_failure(WS_ERROR, "unexpected error while serving Kafka");
        write_errmsg(errmsg, sink->failure);
        return WS_ERROR;
    }
}

ws_status ws_sink_flush(ws_sink *sink, int timeout_ms, char *errmsg)
{
    if (sink == nullptr) {
        write_errmsg(errmsg, "no Kafka sink");
        return WS_ERROR;
    }
    try {
        {
            /* Dead letters are produced as the refusals behind them are served. */
            const ws_sink::AckClock ack_clock(*sink);
            const Clock::time_point deadline =
                Clock::now() + std::chrono::milliseconds(std::max(timeout_ms, 0));
            do {
                sink->write_dead_letters();
                auto remaining =
                    std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
                rd_kafka_flush(sink->kafka,
                               static_cast<int>(std::max<int64_t>(remaining.count(), 0)));
                /* a dead letter waiting for its topic: wait for the creation, not spin */
                if (!sink->dead_letters.empty())
                    sink->serve(10);
            } while (!sink->dead_letters.empty() && sink->failure_status == WS_OK &&
                     Clock::now() < deadline);
        }
        sink->serve_admin_results(0);
        sink->check_fatal();
        if (sink->failure_status != WS_OK) {
            write_errmsg(errmsg, sink->failure);
            return sink->failure_status;
        }
        if (sink->watermark.in_flight() > 0) {
            write_errmsg(errmsg, std::to_string(sink->watermark.in_flight()) +
                                     " events still in flight to Kafka after " +
                                     std::to_string(std::max(timeout_ms, 0)) + " ms");
            return WS_ERROR;
        }
        return WS_OK;
    } catch (const std::bad_alloc &) {
        sink->record_out_of_memory();
        write_errmsg(errmsg, "out of memory while flushing Kafka");
        return WS_OUT_OF_MEMORY;
    } catch (...) {
        write_errmsg(errmsg, "unexpected error while flushing Kafka");
        return WS_ERROR;
    }
}

uint64_t ws_sink_watermark(const ws_sink *sink)
{
    return sink != nullptr ? sink->watermark.watermark() : 0;
}

bool ws_sink_idle(const ws_sink *sink)
{
    return sink == nullptr || sink->watermark.idle();
}

void ws_sink_get_stats(const ws_sink *sink, ws_sink_stats *out)
{
    if (out == nullptr)
        return;
    if (sink == nullptr) {
        *out = ws_sink_stats{};
        return;
    }
    *out = sink->stats;
    out->in_flight = sink->watermark.in_flight();
}

bool ws_sink_last_error(const ws_sink *sink, char *errmsg)
{
    if (sink == nullptr || !sink->has_last_error)
        return false;
    write_errmsg(errmsg, sink->last_error);
    return true;
}

bool ws_sink_next_log(ws_sink *sink, int *level, char *line, size_t linelen)
{
    if (sink == nullptr)
        return false;
    try {
        if (sink->logs_dropped > 0) {
            uint64_t dropped = sink->logs_dropped;
            sink->logs_dropped = 0;
            sink->logs.push_front(LogLine{kLogWarning, std::to_string(dropped) +
                                                           " Kafka log lines were dropped: "
                                                           "the stream worker read too few"});
        }
        if (sink->logs.empty())
            return false;
        const LogLine &next = sink->logs.front();
        if (level != nullptr)
            *level = next.level;
        if (line != nullptr && linelen > 0)
            std::snprintf(line, linelen, "%s", next.text.c_str());
        sink->logs.pop_front();
        return true;
    } catch (...) {
        return false;
    }
}

} /* extern "C" */
