/*
 * topics.cpp: the topic state machine and CreateTopics (see topics.hpp).
 */
#include "core_error.hpp" /* first: the guard that no PostgreSQL header got here */

#include "topics.hpp"

#include "boundary.hpp"

#include <algorithm>
#include <cctype>

namespace walship
{

namespace
{

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

std::string broker_default_or(int value)
{
    return value < 0 ? std::string("broker default") : std::to_string(value);
}

} // namespace

bool is_valid_topic_name(const std::string &name)
{
    if (name.empty() || name.size() > kTopicNameMaxLength || name == "." || name == "..")
        return false;
    return std::all_of(name.begin(), name.end(), [](unsigned char c) {
        return std::isalnum(c) || c == '.' || c == '_' || c == '-';
    });
}

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

void Topics::open(rd_kafka_t *kafka, Settings settings)
{
    kafka_ = kafka;
    settings_ = std::move(settings);
    results_ = rd_kafka_queue_new(kafka_);
    if (results_ == nullptr)
        throw CoreError(WS_ERR_KAFKA, "could not create the queue for topic creation results");
}

void Topics::close() noexcept
{
    for (auto &entry : topics_) {
        if (entry.second->handle != nullptr)
            rd_kafka_topic_destroy(entry.second->handle);
        entry.second->handle = nullptr;
    }
    if (results_ != nullptr)
        rd_kafka_queue_destroy(results_);
    results_ = nullptr;
}

SinkTopic &Topics::topic(const char *name)
{
    if (last_topic_ != nullptr && last_topic_->name == name)
        return *last_topic_;
    auto found = topics_.find(name);
    if (found == topics_.end()) {
        auto created = std::make_unique<SinkTopic>(name);
        found = topics_.emplace(created->name, std::move(created)).first;
    }
    last_topic_ = found->second.get();
    return *last_topic_;
}

Topics::Readiness Topics::prepare(SinkTopic &topic, std::string &why)
{
    if (topic.state == TopicState::Unchecked) {
        if (!is_valid_topic_name(topic.name)) {
            topic.state = TopicState::Refused;
            topic.refusal = "invalid Kafka topic name " + quoted(topic.name) +
                            ": Kafka allows only ASCII letters, digits, '.', '_' and '-', "
                            "at most 249 of them";
        } else if (creation_unavailable_) {
            topic.state = TopicState::Ready;
        } else {
            start_creation(topic);
        }
    }
    if (topic.state == TopicState::Creating)
        serve_results(0);
    if (topic.state == TopicState::Retrying && Clock::now() >= topic.retry_at)
        start_creation(topic);
    switch (topic.state) {
    case TopicState::Creating:
    case TopicState::Retrying:
        why = "waiting for Kafka topic " + quoted(topic.name) + " to be created";
        return Readiness::Pending;
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
        topic.handle = rd_kafka_topic_new(kafka_, topic.name.c_str(), nullptr);
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

void Topics::start_creation(SinkTopic &topic)
{
    const std::string &name = topic.name;
    char errstr[512];
    std::unique_ptr<rd_kafka_NewTopic_t, NewTopicDeleter> new_topic(rd_kafka_NewTopic_new(
        name.c_str(), topic.partitions > 0 ? topic.partitions : settings_.partitions,
        settings_.replication_factor, errstr, sizeof(errstr)));
    if (!new_topic) {
        topic.state = TopicState::Refused;
        topic.refusal = "could not create Kafka topic " + quoted(name) + ": " + errstr;
        return;
    }
    if (!settings_.max_message_bytes.empty()) {
        rd_kafka_resp_err_t err = rd_kafka_NewTopic_set_config(new_topic.get(), "max.message.bytes",
                                                               settings_.max_message_bytes.c_str());
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            topic.state = TopicState::Refused;
            topic.refusal = "could not set max.message.bytes for Kafka topic " + quoted(name) +
                            ": " + rd_kafka_err2str(err);
            return;
        }
    }
    for (const auto &[config, value] : topic.configs) {
        if (rd_kafka_NewTopic_set_config(new_topic.get(), config.c_str(), value.c_str()) !=
            RD_KAFKA_RESP_ERR_NO_ERROR) {
            topic.state = TopicState::Refused;
            topic.refusal = "could not set " + config + " for Kafka topic " + quoted(name);
            return;
        }
    }
    std::unique_ptr<rd_kafka_AdminOptions_t, AdminOptionsDeleter> options(
        rd_kafka_AdminOptions_new(kafka_, RD_KAFKA_ADMIN_OP_CREATETOPICS));
    if (!options ||
        rd_kafka_AdminOptions_set_operation_timeout(options.get(), request_timeout_ms_ / 2, errstr,
                                                    sizeof(errstr)) ||
        rd_kafka_AdminOptions_set_request_timeout(options.get(), request_timeout_ms_, errstr,
                                                  sizeof(errstr))) {
        topic.state = TopicState::Refused;
        topic.refusal = "could not prepare the creation of Kafka topic " + quoted(name);
        return;
    }
    rd_kafka_AdminOptions_set_opaque(options.get(), &topic);
    rd_kafka_NewTopic_t *request[] = {new_topic.get()};
    rd_kafka_CreateTopics(kafka_, request, 1, options.get(), results_);
    topic.state = TopicState::Creating;
    if (topic.attempts++ == 0)
        topic.first_attempt = Clock::now();
    ++creating_;
}

void Topics::finish_creation(SinkTopic &topic, rd_kafka_resp_err_t err, const char *reason)
{
    const std::string &name = topic.name;
    --creating_;
    std::string why =
        scrubber_.scrub(reason != nullptr && reason[0] != '\0' ? reason : rd_kafka_err2str(err)) +
        " (" + rd_kafka_err2name(err) + ")";
    switch (classify_creation(err)) {
    case CreationOutcome::Created:
        topic.state = TopicState::Ready;
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            topic.created = true;
            logs_.add(kLogInfo, "created Kafka topic " + quoted(name) + " (partitions: " +
                                    broker_default_or(topic.partitions > 0 ? topic.partitions
                                                                           : settings_.partitions) +
                                    ", replication factor: " +
                                    broker_default_or(settings_.replication_factor) + ")");
        }
        return;
    case CreationOutcome::Retry: {
        /* A cluster that answered metadata (it named a controller) but does not complete
         * the creation (no reachable controller, a proxy without the Admin API) would
         * stall the stream for good: after the budget, produce anyway. */
        const bool cluster_answers = rd_kafka_controllerid(kafka_, 0) != -1;
        const auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(
            Clock::now() - topic.first_attempt);
        if (cluster_answers && waited.count() >= budget_ms_) {
            topic.state = TopicState::Ready;
            creation_unavailable_ = true;
            logs_.add(kLogWarning, "could not create Kafka topic " + quoted(name) + " in " +
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
        logs_.add(kLogWarning, "could not create Kafka topic " + quoted(name) + " (attempt " +
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
        logs_.add(kLogWarning, "could not create Kafka topic " + quoted(name) + ": " + why +
                                   "; producing to it anyway, it must exist already or be "
                                   "created by the broker");
        return;
    case CreationOutcome::Unavailable:
        topic.state = TopicState::Ready;
        creation_unavailable_ = true;
        logs_.add(kLogWarning, "could not create Kafka topic " + quoted(name) + ": " + why +
                                   "; producing to it anyway, it must exist already or be "
                                   "created by the broker; other topics are not created either");
        return;
    }
}

void Topics::serve_results(int timeout_ms)
{
    while (creating_ > 0) {
        std::unique_ptr<rd_kafka_event_t, EventDeleter> event(
            rd_kafka_queue_poll(results_, timeout_ms));
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
            finish_creation(*topic, rd_kafka_event_error(event.get()),
                            rd_kafka_event_error_string(event.get()));
        } else {
            finish_creation(*topic, rd_kafka_topic_result_error(results[0]),
                            rd_kafka_topic_result_error_string(results[0]));
        }
    }
}

} // namespace walship
