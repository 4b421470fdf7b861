/*
 * topics.hpp: the topics a sink produces to, and their creation.
 *
 * The first event for a topic sends CreateTopics (the stream's partitions and
 * replication factor, and max.message.bytes to match the producer's message.max.bytes);
 * until the broker has answered, the topic is not ready (produce answers
 * WS_PRODUCE_TOPIC_PENDING), so the worker keeps checking interrupts while it waits.
 * Only then does the producer look the topic up: an earlier lookup would let a broker
 * with auto.create.topics.enable create it first, with its own defaults. See
 * classify_creation for what each answer leads to.
 */
#ifndef WALSHIP_SINK_TOPICS_HPP
#define WALSHIP_SINK_TOPICS_HPP

#include "log_queue.hpp"
#include "properties.hpp"

#include <librdkafka/rdkafka.h>

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace walship
{

using Clock = std::chrono::steady_clock;

/* Kafka's own limit on topic names. */
constexpr size_t kTopicNameMaxLength = 249;
/* CreateTopics: how long we wait for one answer (the broker gets half of it to finish
 * the creation). The worker is not blocked meanwhile: the topic is pending. */
constexpr int kTopicCreateRequestTimeoutMs = 10000;
/* Retriable creation failures (broker down, controller moving) back off to this. */
constexpr int kTopicCreateFirstBackoffMs = 500;
constexpr int kTopicCreateMaxBackoffMs = 10000;
/* How long a cluster that answers metadata may keep failing to create a topic before we
 * produce to it anyway. A cluster that never answered is down: for it we wait without
 * limit, as delivery would anyway. */
constexpr int kTopicCreateBudgetMs = 60000;

/* ASCII letters, digits, '.', '_' and '-', at most 249, not "." or "..". */
bool is_valid_topic_name(const std::string &name);

enum class CreationOutcome { Created, Retry, Refuse, ProduceAnyway, Unavailable };

/*
 * What a CreateTopics error means for the stream. Transient trouble is retried (while
 * it lasts, the topic is pending: the same backpressure a full queue gives). Mistakes
 * only the user can fix refuse the topic. Anything else (no permission to create
 * topics, an old broker, a creation policy) means topics are managed elsewhere: produce,
 * and let Kafka say whether the topic exists. When that holds for the whole cluster
 * (Unavailable), later topics are not even tried.
 */
CreationOutcome classify_creation(rd_kafka_resp_err_t err);

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
    /* What this topic gets when walship creates it, instead of the stream's settings
     * (exactly once's offsets topic): partitions (0: the stream's) and topic configs. */
    int partitions = 0;
    std::vector<std::pair<std::string, std::string>> configs;
    /* walship's CreateTopics created it (it did not exist before) */
    bool created = false;
};

class Topics
{
  public:
    enum class Readiness { Ready, Pending, Refused };

    /* What topics walship creates get. */
    struct Settings {
        int partitions = -1;         /* -1: the broker's default */
        int replication_factor = -1; /* -1: the broker's default */
        /* empty: the broker's default */
        std::string max_message_bytes;
    };

    /* Logs go to logs, reasons Kafka gives are scrubbed with scrubber. */
    Topics(LogQueue &logs, const SecretScrubber &scrubber) : logs_(logs), scrubber_(scrubber) {}
    ~Topics()
    {
        close();
    }
    Topics(const Topics &) = delete;
    Topics &operator=(const Topics &) = delete;

    /* Starts serving kafka's topics; throws CoreError when it cannot. */
    void open(rd_kafka_t *kafka, Settings settings);
    /* Destroys the topic handles and the queue of creation results (before kafka). */
    void close() noexcept;

    const Settings &settings() const
    {
        return settings_;
    }
    /* The topic of this name, known from now on (nothing is sent yet). */
    SinkTopic &topic(const char *name);
    /* Creates the topic if needed, then its handle: Pending while it is being created,
     * Refused (and why) when it cannot be produced to. */
    Readiness prepare(SinkTopic &topic, std::string &why);
    /* Applies CreateTopics answers, waiting up to timeout_ms for the first. */
    void serve_results(int timeout_ms);
    /* CreateTopics requests without an answer yet. */
    int creating() const
    {
        return creating_;
    }
    /* For tests: librdkafka's mock cluster never completes a creation. */
    void set_creation_limits(int request_timeout_ms, int budget_ms)
    {
        request_timeout_ms_ = request_timeout_ms;
        budget_ms_ = budget_ms;
    }

  private:
    void start_creation(SinkTopic &topic);
    void finish_creation(SinkTopic &topic, rd_kafka_resp_err_t err, const char *reason);

    LogQueue &logs_;
    const SecretScrubber &scrubber_;
    rd_kafka_t *kafka_ = nullptr;
    /* CreateTopics results; served while a creation is under way. */
    rd_kafka_queue_t *results_ = nullptr;
    Settings settings_;
    /* Never erased before the sink dies: CreateTopics carries a pointer to a topic. Keyed
     * by a view of the topic's own name, so that looking a name up allocates nothing. */
    std::unordered_map<std::string_view, std::unique_ptr<SinkTopic>> topics_;
    /* The previous event's topic: a stream's events come in runs of one table, so most
     * events skip even the hash lookup. */
    SinkTopic *last_topic_ = nullptr;
    int creating_ = 0;
    int request_timeout_ms_ = kTopicCreateRequestTimeoutMs;
    int budget_ms_ = kTopicCreateBudgetMs;
    /* This cluster creates no topics for us (no Admin API, no permission, creation that
     * never completes): later topics skip the attempt. */
    bool creation_unavailable_ = false;
};

} // namespace walship

#endif
