/*
 * test_sink_properties.cpp: which Kafka properties a stream may set, what the producer
 * starts from, that no message the sink writes shows a secret, and the errors of the
 * one configuration check. The policy and the secrets are pure functions
 * (properties.hpp), tested without librdkafka; the rest goes through librdkafka's
 * parser or creates a producer that connects nowhere.
 */
#include "walship_sink.h"
#include "boundary.hpp"
#include "producer_conf.hpp"
#include "properties.hpp"
#include "sink_internal.hpp"
#include "sink_test_support.hpp"
#include "topics.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace
{

struct SinkDeleter {
    void operator()(ws_sink *sink) const
    {
        ws_sink_destroy(sink);
    }
};
using SinkPtr = std::unique_ptr<ws_sink, SinkDeleter>;

using walship_sink_test::Properties;
using walship_sink_test::SinkConfig;

/* No connection is attempted before the first event, so nothing needs to listen here. */
constexpr const char *kNowhere = "127.0.0.1:1";

SinkPtr create_sink(const char *bootstrap, const Properties &properties, std::string &error,
                    int partitions = -1, int replication_factor = -1)
{
    SinkConfig sink_config(bootstrap, properties, partitions, replication_factor);
    ws_error err{};
    SinkPtr sink(ws_sink_create(&sink_config.config, &err));
    error = sink ? "" : err.message;
    return sink;
}

/* One property through the policy and librdkafka's parser, as the sink checks each. */
std::string check(const char *name, const char *value, bool secret = false)
{
    walship::SecretScrubber scrubber;
    if (secret || (name != nullptr && walship::is_secret_property(name)))
        scrubber.add(value);
    walship::ProducerConf conf(scrubber);
    std::string why;
    return conf.check(name, value, secret, why) ? std::string() : why;
}

/* The policy alone: no librdkafka at all. */
std::string policy(const char *name, const char *value, bool secret = false)
{
    std::string why;
    return walship::property_allowed(name, value, secret, why) ? std::string() : why;
}

bool contains(const std::string &text, const std::string &part)
{
    return text.find(part) != std::string::npos;
}

/* The producer's effective setting, as librdkafka holds it. */
std::string effective(ws_sink *sink, const char *name)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_dup(rd_kafka_conf(walship::sink_kafka_handle(sink)));
    char value[512];
    size_t size = sizeof(value);
    rd_kafka_conf_res_t res = rd_kafka_conf_get(conf, name, value, &size);
    rd_kafka_conf_destroy(conf);
    return res == RD_KAFKA_CONF_OK ? std::string(value) : std::string("<unknown>");
}

} // namespace

TEST(SinkProperty, SecretsAreRecognizedByName)
{
    for (const char *name :
         {"sasl.password", "ssl.key.password", "ssl.keystore.password", "ssl.key.pem",
          "sasl.oauthbearer.client.secret", "sasl.oauthbearer.config", "SASL.PASSWORD"})
        EXPECT_TRUE(walship::is_secret_property(name)) << name;
    for (const char *name : {"bootstrap.servers", "linger.ms", "sasl.username", "sasl.mechanism",
                             "key.serializer", "socket.keepalive.enable", "ssl.ca.location"})
        EXPECT_FALSE(walship::is_secret_property(name)) << name;
}

TEST(SinkProperty, OrdinaryPropertiesAreAccepted)
{
    EXPECT_EQ(check("linger.ms", "20"), "");
    EXPECT_EQ(check("compression.type", "lz4"), "");
    EXPECT_EQ(check("acks", "all"), "");
    EXPECT_EQ(check("acks", "-1"), "");
    EXPECT_EQ(check("enable.idempotence", "true"), "");
    EXPECT_EQ(check("partitioner", "murmur2"), "");
    EXPECT_EQ(check("message.timeout.ms", "600000"), "");
    EXPECT_EQ(check("sasl.password", "hunter2"), "");
    EXPECT_EQ(check("security.protocol", "sasl_ssl"), "");
}

TEST(SinkProperty, PropertiesThatBreakDeliveryGuaranteesAreRefused)
{
    std::string why = check("enable.idempotence", "false");
    EXPECT_NE(why.find("\"enable.idempotence\""), std::string::npos) << why;
    EXPECT_NE(why.find("idempotent"), std::string::npos) << why;

    why = check("acks", "1");
    EXPECT_NE(why.find("\"acks\" must be \"all\""), std::string::npos) << why;
    EXPECT_NE(check("request.required.acks", "0"), "");

    why = check("partitioner", "consistent_random");
    EXPECT_NE(why.find("murmur2"), std::string::npos) << why;

    EXPECT_NE(check("max.in.flight.requests.per.connection", "10"), "");
    EXPECT_NE(check("retries", "0"), "");
    EXPECT_NE(check("queuing.strategy", "lifo"), "");
    why = check("delivery.report.only.error", "true");
    EXPECT_NE(why.find("watermark"), std::string::npos) << why;
    EXPECT_NE(check("transactional.id", "walship-1"), "");
    EXPECT_NE(check("log.queue", "false"), "");
}

TEST(SinkProperty, PropertiesThatRunCodeInTheServerAreRefused)
{
    for (const char *name : {"plugin.library.paths", "ssl.engine.location",
                             "sasl.kerberos.kinit.cmd", "test.mock.num.brokers"}) {
        std::string why = check(name, "1");
        EXPECT_NE(why.find(std::string("\"") + name + "\""), std::string::npos) << why;
    }
    EXPECT_NE(check("ssl.providers", "/tmp/evil"), "");
    EXPECT_EQ(check("ssl.providers", "default,legacy"), "");
    EXPECT_NE(check("internal.termination.signal", "15"), "");
    for (const char *name : {"offset.store.path", "offset.store.method"}) {
        std::string why = check(name, "file");
        EXPECT_NE(why.find(std::string("\"") + name + "\""), std::string::npos) << why;
    }
}

/* librdkafka pastes principal and keytab into its kinit command, run by a shell. */
TEST(SinkProperty, KerberosValuesThatAShellWouldInterpretAreRefused)
{
    for (const char *principal : {"x; id > /tmp/f; #", "$(id)", "`id`", "a b", "-V", "x'y", "x\"y",
                                  "x|y", "x&y", "x\ny", "%{sasl.password}", ""}) {
        std::string why = check("sasl.kerberos.principal", principal);
        EXPECT_NE(why.find("\"sasl.kerberos.principal\""), std::string::npos) << principal;
    }
    for (const char *keytab :
         {"/x\"; id > /tmp/f; \"", "/x$(id)", "relative.keytab", "/a b", "/x`id`", "-k", "/x'"}) {
        std::string why = check("sasl.kerberos.keytab", keytab);
        EXPECT_NE(why.find("\"sasl.kerberos.keytab\""), std::string::npos) << keytab;
    }
    EXPECT_EQ(check("sasl.kerberos.principal", "walship/db1.example.com@EXAMPLE.COM"), "");
    EXPECT_EQ(check("sasl.kerberos.principal", "kafka-client_1"), "");
    EXPECT_EQ(check("sasl.kerberos.keytab", "/etc/walship/kafka.keytab"), "");
}

/* The only kinit command a producer ever has is walship's, quoting what it substitutes. */
TEST(SinkProperty, WalshipSetsTheKinitCommandItself)
{
    std::string error;
    SinkPtr sink = create_sink(kNowhere,
                               {{"sasl.kerberos.principal", "walship@EXAMPLE.COM"},
                                {"sasl.kerberos.keytab", "/etc/walship/kafka.keytab"}},
                               error);
    ASSERT_NE(sink, nullptr) << error;
    EXPECT_EQ(effective(sink.get(), "sasl.kerberos.kinit.cmd"),
              "kinit -R -t '%{sasl.kerberos.keytab}' -k '%{sasl.kerberos.principal}' || kinit "
              "-t '%{sasl.kerberos.keytab}' -k '%{sasl.kerberos.principal}'");
}

/* A value read from a file is a secret whatever the property's name. */
TEST(SinkProperty, ValuesMarkedSecretNeverAppearInMessages)
{
    std::string why = check("compression.type", "file-content-4711", true);
    EXPECT_NE(why.find("\"compression.type\""), std::string::npos) << why;
    EXPECT_EQ(why.find("file-content-4711"), std::string::npos) << why;
    /* walship's own refusals do not quote it either */
    for (const char *name : {"acks", "partitioner"}) {
        why = check(name, "file-content-4711", true);
        EXPECT_NE(why.find(std::string("\"") + name + "\""), std::string::npos) << why;
        EXPECT_EQ(why.find("file-content-4711"), std::string::npos) << why;
    }
    /* librdkafka itself quotes a bad value: unmarked, it shows */
    why = check("compression.type", "file-content-4711", false);
    EXPECT_NE(why.find("file-content-4711"), std::string::npos) << why;
}

TEST(SinkProperty, UnknownAndInvalidPropertiesAreNamed)
{
    std::string why = check("no.such.property", "1");
    EXPECT_NE(why.find("unknown Kafka property \"no.such.property\""), std::string::npos) << why;

    why = check("linger.ms", "soon");
    EXPECT_NE(why.find("\"linger.ms\""), std::string::npos) << why;

    EXPECT_NE(check("linger.ms", nullptr), "");
    EXPECT_NE(check(nullptr, "1"), "");
}

TEST(SinkProperty, InvalidSecretValueIsNotShown)
{
    /* A pointer-typed property: librdkafka refuses any string for it. */
    std::string why = check("ssl_key", "hunter2-top-secret");
    EXPECT_NE(why.find("\"ssl_key\""), std::string::npos) << why;
    EXPECT_EQ(why.find("hunter2"), std::string::npos) << why;
}

TEST(SinkCreate, SecretGivenElsewhereIsScrubbedFromErrors)
{
    /* The password pasted into the wrong property too: librdkafka quotes the bad value. */
    std::string error;
    SinkPtr sink = create_sink(
        kNowhere,
        {{"sasl.password", "hunter2-top-secret"}, {"security.protocol", "hunter2-top-secret"}},
        error);
    EXPECT_FALSE(sink);
    EXPECT_NE(error.find("\"security.protocol\""), std::string::npos) << error;
    EXPECT_EQ(error.find("hunter2"), std::string::npos) << error;
}

TEST(SinkCreate, RefusedPropertyFailsCreation)
{
    std::string error;
    SinkPtr sink = create_sink(kNowhere, {{"linger.ms", "10"}, {"acks", "1"}}, error);
    EXPECT_FALSE(sink);
    EXPECT_NE(error.find("\"acks\""), std::string::npos) << error;
}

TEST(SinkCreate, BootstrapServersAreRequiredOnce)
{
    std::string error;
    EXPECT_FALSE(create_sink(nullptr, {}, error));
    EXPECT_NE(error.find("bootstrap"), std::string::npos) << error;

    EXPECT_FALSE(create_sink(kNowhere, {{"bootstrap.servers", "127.0.0.1:2"}}, error));
    EXPECT_NE(error.find("conflicting or redundant"), std::string::npos) << error;

    SinkPtr sink = create_sink("", {{"bootstrap.servers", kNowhere}}, error);
    EXPECT_TRUE(sink) << error;
}

TEST(SinkCreate, TopicSettingsAreChecked)
{
    std::string error;
    EXPECT_FALSE(create_sink(kNowhere, {}, error, 0, -1));
    EXPECT_NE(error.find("partitions"), std::string::npos) << error;
    EXPECT_FALSE(create_sink(kNowhere, {}, error, 3, -5));
    EXPECT_NE(error.find("replication factor"), std::string::npos) << error;
    EXPECT_TRUE(create_sink(kNowhere, {}, error, 12, 3)) << error;
}

TEST(SinkCreate, ProducerStartsFromWalshipDefaults)
{
    std::string error;
    SinkPtr sink = create_sink(kNowhere, {}, error);
    ASSERT_TRUE(sink) << error;
    EXPECT_EQ(effective(sink.get(), "enable.idempotence"), "true");
    EXPECT_EQ(effective(sink.get(), "partitioner"), "murmur2_random");
    EXPECT_EQ(effective(sink.get(), "message.timeout.ms"), "0");
    EXPECT_EQ(effective(sink.get(), "linger.ms"), "5");
    EXPECT_EQ(effective(sink.get(), "compression.type"), "none");
    EXPECT_EQ(effective(sink.get(), "batch.size"), "1000000");
    /* 32 MiB: large rows flow; below the queue (64 MiB), so one always fits in it. */
    EXPECT_EQ(effective(sink.get(), "message.max.bytes"), "33554432");
    EXPECT_EQ(effective(sink.get(), "queue.buffering.max.kbytes"), "65536");
    EXPECT_EQ(effective(sink.get(), "queue.buffering.max.messages"), "100000");
    EXPECT_EQ(effective(sink.get(), "client.id"), "walship");
    EXPECT_EQ(effective(sink.get(), "log.queue"), "true");
}

TEST(SinkCreate, StreamPropertiesOverrideDefaults)
{
    std::string error;
    SinkPtr sink = create_sink(kNowhere,
                               {{"linger.ms", "50"},
                                {"compression.type", "lz4"},
                                {"message.timeout.ms", "120000"},
                                {"client.id", "orders-stream"},
                                {"message.max.bytes", "2000000"}},
                               error);
    ASSERT_TRUE(sink) << error;
    EXPECT_EQ(effective(sink.get(), "linger.ms"), "50");
    EXPECT_EQ(effective(sink.get(), "compression.type"), "lz4");
    EXPECT_EQ(effective(sink.get(), "message.timeout.ms"), "120000");
    EXPECT_EQ(effective(sink.get(), "client.id"), "orders-stream");
    EXPECT_EQ(effective(sink.get(), "message.max.bytes"), "2000000");
    EXPECT_EQ(effective(sink.get(), "enable.idempotence"), "true");
}

TEST(SinkCreate, ConflictsFoundOnlyByLibrdkafkaAreReported)
{
    /* linger.ms must stay below a bounded message.timeout.ms: librdkafka checks it when
     * the producer is created. */
    std::string error;
    SinkPtr sink =
        create_sink(kNowhere, {{"linger.ms", "5000"}, {"message.timeout.ms", "1000"}}, error);
    EXPECT_FALSE(sink);
    EXPECT_NE(error.find("linger.ms"), std::string::npos) << error;
}

TEST(SinkCreate, SecretsNeverReachLogLinesOrErrors)
{
    /* debug=all has librdkafka dump its whole configuration into the log. */
    std::string error;
    SinkPtr sink = create_sink(kNowhere,
                               {{"debug", "all"},
                                {"security.protocol", "sasl_plaintext"},
                                {"sasl.mechanism", "PLAIN"},
                                {"sasl.username", "walship"},
                                {"sasl.password", "hunter2-top-secret"}},
                               error);
    ASSERT_TRUE(sink) << error;
    std::vector<std::string> lines;
    ws_error err{};
    /* Until the connection attempt has failed at least once (a broker error). */
    for (int i = 0; i < 500 && !ws_sink_last_error(sink.get(), &err); ++i) {
        ws_sink_poll(sink.get(), 20, &err);
        int level = 0;
        char line[1024];
        while (ws_sink_next_log(sink.get(), &level, line, sizeof(line)))
            lines.emplace_back(line);
    }
    EXPECT_TRUE(ws_sink_last_error(sink.get(), &err)) << "no connection failure reported";
    EXPECT_EQ(err.kind, WS_ERR_KAFKA);
    EXPECT_EQ(std::string(err.message).find("hunter2"), std::string::npos) << err.message;
    EXPECT_GT(lines.size(), 10u);
    bool configuration_dumped = false;
    for (const std::string &line : lines) {
        EXPECT_EQ(line.find("hunter2"), std::string::npos) << line;
        configuration_dumped |= line.find("sasl.password") != std::string::npos;
    }
    EXPECT_TRUE(configuration_dumped) << "librdkafka did not log its configuration";
}

/* A secret that contains another is replaced whole, not as "***-rest". */
TEST(SinkProperty, OverlappingSecretsAreScrubbedWhole)
{
    std::string error;
    SinkPtr sink = create_sink(kNowhere,
                               {{"sasl.password", "hunter2"},
                                {"ssl.key.password", "hunter2-and-more"},
                                {"compression.type", "hunter2-and-more"}},
                               error);
    EXPECT_EQ(sink, nullptr);
    EXPECT_NE(error.find("\"compression.type\""), std::string::npos) << error;
    EXPECT_EQ(error.find("hunter2"), std::string::npos) << error;
    EXPECT_EQ(error.find("and-more"), std::string::npos) << error;
}

/* librdkafka would read "6x" as 6: walship wants the whole value to be a number. */
TEST(SinkProperty, NumbersWithTrailingJunkAreRefused)
{
    for (const char *name :
         {"max.in.flight", "retries", "socket.timeout.ms", "batch.num.messages"}) {
        std::string why = check(name, "6000x");
        EXPECT_NE(why.find(std::string("\"") + name + "\""), std::string::npos)
            << name << ": " << why;
        EXPECT_NE(why.find("whole number"), std::string::npos) << name << ": " << why;
    }
    EXPECT_EQ(check("socket.timeout.ms", "6000"), "");
    EXPECT_EQ(check("linger.ms", "5"), "");
    EXPECT_EQ(check("linger.ms", "0.5"), "");
    EXPECT_EQ(check("max.in.flight", "5"), "");
    EXPECT_EQ(check("compression.type", "lz4"), "");
    EXPECT_EQ(check("client.id", "7-up"), "");
}

/* Combinations librdkafka checks only when it creates a producer. */
TEST(SinkProperty, TheWholeConfigurationIsCheckedTogether)
{
    ws_error err{};
    SinkConfig refused(kNowhere, {{"linger.ms", "100"}, {"message.timeout.ms", "50"}});
    EXPECT_EQ(ws_sink_check_config(&refused.config, &err), WS_ERROR);
    EXPECT_NE(std::string(err.message).find("linger.ms"), std::string::npos) << err.message;
    SinkConfig accepted(kNowhere, {{"linger.ms", "5"}, {"message.timeout.ms", "50"}});
    EXPECT_EQ(ws_sink_check_config(&accepted.config, &err), WS_OK) << err.message;
}

/* ------------------------------------------------------------------------- */
/* The pure parts: no librdkafka involved                                      */

TEST(SinkPolicy, DecidesWithoutLibrdkafka)
{
    struct Case {
        const char *name;
        const char *value;
        bool allowed;
    };
    const Case cases[] = {
        {"linger.ms", "not a number", true}, /* values are librdkafka's to parse */
        {"no.such.property", "1", true},     /* names are librdkafka's to know */
        {"acks", "0", false},
        {"acks", "ALL", true},
        {"acks", "-1", true},
        {"enable.idempotence", "TRUE", true},
        {"enable.idempotence", "false", false},
        {"enable.idempotence", "FALSE", false},
        {"enable.idempotence", "f", false},
        {"enable.idempotence", "0", false},
        {"max.in.flight", "5", true},
        {"max.in.flight", "6", false},
        {"max.in.flight", "5x", false},
        {"retries", "0x10", true}, /* strtol's bases, as librdkafka */
        {"message.send.max.retries", "0", false},
        {"queuing.strategy", "fifo", true},
        {"delivery.report.only.error", "false", true},
        {"enabled_events", "1", false},
        {"transaction.timeout.ms", "1000", false},
        {"test.mock.num.brokers", "3", false},
        {"offset.store.sync.interval.ms", "1", false},
    };
    for (const Case &c : cases) {
        const std::string why = policy(c.name, c.value);
        EXPECT_EQ(why.empty(), c.allowed) << c.name << "=" << c.value << ": " << why;
        if (!c.allowed) {
            EXPECT_TRUE(contains(why, std::string("Kafka property \"") + c.name + "\"")) << why;
        }
    }
}

TEST(SinkPolicy, SecretValuesAreNeverQuoted)
{
    for (const char *name : {"acks", "partitioner"}) {
        std::string why = policy(name, "s3cr3t-value", true);
        EXPECT_TRUE(contains(why, std::string("\"") + name + "\"")) << why;
        EXPECT_TRUE(contains(why, "the value given")) << why;
        EXPECT_FALSE(contains(why, "s3cr3t")) << why;
        EXPECT_TRUE(contains(policy(name, "plain-value"), "\"plain-value\""));
    }
}

TEST(SinkPolicy, KerberosValuesArePlainNamesAndAbsolutePaths)
{
    EXPECT_TRUE(walship::is_plain_kerberos_value("walship/db1.example.com@EXAMPLE.COM", false));
    EXPECT_TRUE(walship::is_plain_kerberos_value("a+b_c-d", false));
    EXPECT_FALSE(walship::is_plain_kerberos_value("", false));
    EXPECT_FALSE(walship::is_plain_kerberos_value("-k", false));
    EXPECT_FALSE(walship::is_plain_kerberos_value("a b", false));
    EXPECT_FALSE(walship::is_plain_kerberos_value("a%b", false));
    EXPECT_TRUE(walship::is_plain_kerberos_value("/etc/kafka.keytab", true));
    EXPECT_FALSE(walship::is_plain_kerberos_value("etc/kafka.keytab", true));
    EXPECT_FALSE(walship::is_plain_kerberos_value("/etc/kafka keytab", true));
    EXPECT_TRUE(walship::is_plain_kerberos_value(std::string(4096, 'a').c_str(), false));
    EXPECT_FALSE(walship::is_plain_kerberos_value(std::string(4097, 'a').c_str(), false));
}

TEST(SinkPolicy, WalshipsDefaultsAreAllowedByItsOwnPolicy)
{
    bool kinit = false;
    for (const walship::DefaultProperty &property : walship::kDefaultProperties) {
        if (std::strcmp(property.name, "sasl.kerberos.kinit.cmd") == 0) {
            kinit = true;
            EXPECT_STREQ(property.value, walship::kKinitCommand);
            continue; /* walship's own: the stream may not set it */
        }
        EXPECT_EQ(policy(property.name, property.value), "") << property.name;
        EXPECT_EQ(check(property.name, property.value), "") << property.name;
    }
    EXPECT_TRUE(kinit);
    /* only the two checked values are substituted, each single-quoted */
    const std::string command = walship::kKinitCommand;
    size_t at = 0;
    int substitutions = 0;
    while ((at = command.find("%{", at)) != std::string::npos) {
        const size_t end = command.find('}', at);
        const std::string name = command.substr(at + 2, end - at - 2);
        EXPECT_TRUE(name == "sasl.kerberos.keytab" || name == "sasl.kerberos.principal") << name;
        EXPECT_EQ(command[at - 1], '\'');
        EXPECT_EQ(command[end + 1], '\'');
        ++substitutions;
        at = end;
    }
    EXPECT_EQ(substitutions, 4);
}

TEST(SinkScrubber, ReplacesEverySecretEverywhere)
{
    walship::SecretScrubber scrubber;
    EXPECT_EQ(scrubber.scrub("nothing to hide"), "nothing to hide");
    scrubber.add(nullptr);
    scrubber.add("");
    EXPECT_EQ(scrubber.scrub("empty secrets hide nothing"), "empty secrets hide nothing");
    scrubber.add("pw");
    EXPECT_EQ(scrubber.scrub("pw, pwpw and pw"), "***, ****** and ***");
    scrubber.add("pw-long");
    scrubber.add("x");
    /* longest first, whatever the order they came in; a replacement is never rescanned */
    EXPECT_EQ(scrubber.scrub("pw-long pw x"), "*** *** ***");
    EXPECT_EQ(scrubber.scrub(""), "");
}

TEST(SinkTopicNames, AreKafkasOwnRules)
{
    EXPECT_TRUE(walship::is_valid_topic_name("app.public.orders"));
    EXPECT_TRUE(walship::is_valid_topic_name("a_b-c.D9"));
    EXPECT_TRUE(walship::is_valid_topic_name(std::string(249, 'a')));
    EXPECT_FALSE(walship::is_valid_topic_name(std::string(250, 'a')));
    for (const char *bad : {"", ".", "..", "a b", "ä", "a/b", "a:b"})
        EXPECT_FALSE(walship::is_valid_topic_name(bad)) << bad;
}

TEST(SinkTopicCreation, AnswersAreClassified)
{
    using walship::classify_creation;
    using walship::CreationOutcome;
    EXPECT_EQ(classify_creation(RD_KAFKA_RESP_ERR_NO_ERROR), CreationOutcome::Created);
    EXPECT_EQ(classify_creation(RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS), CreationOutcome::Created);
    EXPECT_EQ(classify_creation(RD_KAFKA_RESP_ERR__TRANSPORT), CreationOutcome::Retry);
    EXPECT_EQ(classify_creation(RD_KAFKA_RESP_ERR_NOT_CONTROLLER), CreationOutcome::Retry);
    EXPECT_EQ(classify_creation(RD_KAFKA_RESP_ERR_INVALID_REPLICATION_FACTOR),
              CreationOutcome::Refuse);
    EXPECT_EQ(classify_creation(RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED),
              CreationOutcome::Unavailable);
    EXPECT_EQ(classify_creation(RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED),
              CreationOutcome::ProduceAnyway);
    EXPECT_EQ(classify_creation(RD_KAFKA_RESP_ERR_POLICY_VIOLATION),
              CreationOutcome::ProduceAnyway);
}

/* ------------------------------------------------------------------------- */
/* The one check's errors                                                      */

TEST(SinkCheck, ErrorsSayWhatKindTheyAre)
{
    ws_error err{};
    SinkConfig refused(kNowhere, {{"acks", "1"}});
    ASSERT_EQ(ws_sink_check_config(&refused.config, &err), WS_ERROR);
    EXPECT_EQ(err.kind, WS_ERR_INVALID_OPTION);
    EXPECT_TRUE(contains(err.message, "Kafka property \"acks\" must be \"all\"")) << err.message;
    EXPECT_STREQ(err.detail, "");

    SinkConfig twice(kNowhere, {{"metadata.broker.list", "127.0.0.1:2"}});
    ASSERT_EQ(ws_sink_check_config(&twice.config, &err), WS_ERROR);
    EXPECT_EQ(err.kind, WS_ERR_CONFLICTING_OPTION);
    EXPECT_TRUE(contains(err.message, "\"metadata.broker.list\"")) << err.message;

    SinkConfig together(kNowhere, {{"linger.ms", "100"}, {"message.timeout.ms", "50"}});
    ASSERT_EQ(ws_sink_check_config(&together.config, &err), WS_ERROR);
    EXPECT_EQ(err.kind, WS_ERR_INVALID_OPTION);
    EXPECT_TRUE(contains(err.message, "could not create the Kafka producer")) << err.message;
    EXPECT_TRUE(contains(err.hint, "CONFIGURATION.md")) << err.hint;

    SinkConfig partitions(kNowhere, {}, 0);
    ASSERT_EQ(ws_sink_check_config(&partitions.config, &err), WS_ERROR);
    EXPECT_EQ(err.kind, WS_ERR_INVALID_OPTION);

    EXPECT_EQ(ws_sink_check_config(nullptr, &err), WS_ERROR);
    EXPECT_EQ(err.kind, WS_ERR_INTERNAL);
    EXPECT_EQ(ws_sink_check_config(nullptr, nullptr), WS_ERROR) << "err may be NULL";
}

/* A value read from a file is a secret, and the error names the file instead. */
TEST(SinkCheck, AValueFromAFileIsNamedByItsFile)
{
    ws_error err{};
    SinkConfig config(kNowhere, {{"linger.ms", "5"}, {"compression.type", "F1le-c0ntent"}});
    config.read_from(1, "/etc/walship/compression");
    ASSERT_EQ(ws_sink_check_config(&config.config, &err), WS_ERROR);
    EXPECT_TRUE(contains(err.message, "Kafka property \"compression.type\"")) << err.message;
    EXPECT_FALSE(contains(err.message, "F1le-c0ntent")) << err.message;
    EXPECT_STREQ(err.detail, "The value was read from file \"/etc/walship/compression\".");

    /* the same content pasted inline into another property is scrubbed there too */
    SinkConfig pasted(kNowhere,
                      {{"compression.type", "F1le-c0ntent"}, {"client.id", "F1le-c0ntent"}});
    pasted.read_from(1, "/etc/walship/client");
    ASSERT_EQ(ws_sink_check_config(&pasted.config, &err), WS_ERROR);
    EXPECT_FALSE(contains(err.message, "F1le-c0ntent")) << err.message;
    EXPECT_STREQ(err.detail, "");
}

/* Error texts are cut to their buffers, never inside a UTF-8 character. */
TEST(SinkCheck, LongErrorsAreCutOnCharacterBoundaries)
{
    /* an unknown property's name is quoted back: make it long and multibyte */
    std::string name;
    while (name.size() < 3 * WS_ERRMSG_SIZE)
        name += "\xC3\xA4\xE2\x82\xAC"; /* ä € */
    ws_error err{};
    SinkConfig config(kNowhere, {{name, "1"}});
    ASSERT_EQ(ws_sink_check_config(&config.config, &err), WS_ERROR);
    const size_t length = std::strlen(err.message);
    EXPECT_LT(length, static_cast<size_t>(WS_ERRMSG_SIZE));
    EXPECT_GT(length, static_cast<size_t>(WS_ERRMSG_SIZE) - 4);
    EXPECT_TRUE(contains(err.message, "unknown Kafka property")) << err.message;
    /* the text ends after a whole character: the last lead byte has all its bytes */
    size_t lead = length;
    while (lead > 0 && (static_cast<unsigned char>(err.message[lead - 1]) & 0xC0) == 0x80)
        --lead;
    ASSERT_GT(lead, 0u);
    const unsigned char first = static_cast<unsigned char>(err.message[lead - 1]);
    const size_t expected = first < 0x80 ? 1 : first >= 0xF0 ? 4 : first >= 0xE0 ? 3 : 2;
    EXPECT_EQ(length - (lead - 1), expected);
}

/* ------------------------------------------------------------------------- */
/* The boundary's copy into a caller's buffer (ws_sink_next_log)               */

TEST(SinkBoundary, CopiesNeverCutACharacter)
{
    char out[6];
    walship::copy_text(out, sizeof(out), "abcd");
    EXPECT_STREQ(out, "abcd");
    walship::copy_text(out, sizeof(out), "abc\xE2\x82\xAC"); /* abc€: 6 bytes, 5 fit */
    EXPECT_STREQ(out, "abc");
    walship::copy_text(out, sizeof(out), "ab\xC3\xA4xyz"); /* abäxyz */
    EXPECT_STREQ(out, "ab\xC3\xA4x");
    walship::copy_text(out, 1, "abc");
    EXPECT_STREQ(out, "");
}
