/*
 * test_sink_properties.cpp: which Kafka properties a stream may set, what the producer
 * starts from, and that no message the sink writes shows a secret.
 */
#include "walship_sink.h"
#include "sink_internal.hpp"

#include <gtest/gtest.h>

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

using Properties = std::vector<std::pair<std::string, std::string>>;

/* No connection is attempted before the first event, so nothing needs to listen here. */
constexpr const char *kNowhere = "127.0.0.1:1";

/* A sink configuration over properties, which it keeps so that its C strings live on. */
struct SinkConfig {
    SinkConfig(const char *bootstrap, Properties props, int partitions = -1,
               int replication_factor = -1)
        : properties(std::move(props))
    {
        for (const auto &property : properties) {
            names.push_back(property.first.c_str());
            values.push_back(property.second.c_str());
        }
        config.bootstrap_servers = bootstrap;
        config.prop_names = names.data();
        config.prop_values = values.data();
        config.nprops = static_cast<int>(properties.size());
        config.topic_partitions = partitions;
        config.topic_replication_factor = replication_factor;
    }

    SinkConfig(const SinkConfig &) = delete; /* config points into this object */
    SinkConfig &operator=(const SinkConfig &) = delete;

    const Properties properties;
    std::vector<const char *> names;
    std::vector<const char *> values;
    ws_sink_config config{};
};

SinkPtr create_sink(const char *bootstrap, const Properties &properties, std::string &error,
                    int partitions = -1, int replication_factor = -1)
{
    SinkConfig sink_config(bootstrap, properties, partitions, replication_factor);
    char errmsg[WS_ERRMSG_SIZE] = "";
    SinkPtr sink(ws_sink_create(&sink_config.config, errmsg));
    error = errmsg;
    return sink;
}

std::string check(const char *name, const char *value, bool secret = false)
{
    char errmsg[WS_ERRMSG_SIZE] = "";
    ws_status status = ws_sink_check_property(name, value, secret, errmsg);
    return status == WS_OK ? std::string() : std::string(errmsg);
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
        EXPECT_TRUE(ws_sink_property_is_secret(name)) << name;
    for (const char *name : {"bootstrap.servers", "linger.ms", "sasl.username", "sasl.mechanism",
                             "key.serializer", "socket.keepalive.enable", "ssl.ca.location"})
        EXPECT_FALSE(ws_sink_property_is_secret(name)) << name;
    EXPECT_FALSE(ws_sink_property_is_secret(nullptr));
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
    char errmsg[WS_ERRMSG_SIZE] = "";
    /* Until the connection attempt has failed at least once (a broker error). */
    for (int i = 0; i < 500 && !ws_sink_last_error(sink.get(), errmsg); ++i) {
        ws_sink_poll(sink.get(), 20, errmsg);
        int level = 0;
        char line[1024];
        while (ws_sink_next_log(sink.get(), &level, line, sizeof(line)))
            lines.emplace_back(line);
    }
    EXPECT_TRUE(ws_sink_last_error(sink.get(), errmsg)) << "no connection failure reported";
    EXPECT_EQ(std::string(errmsg).find("hunter2"), std::string::npos) << errmsg;
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
    char errmsg[WS_ERRMSG_SIZE] = "";
    SinkConfig refused(kNowhere, {{"linger.ms", "100"}, {"message.timeout.ms", "50"}});
    EXPECT_EQ(ws_sink_check_config(&refused.config, errmsg), WS_ERROR);
    EXPECT_NE(std::string(errmsg).find("linger.ms"), std::string::npos) << errmsg;
    SinkConfig accepted(kNowhere, {{"linger.ms", "5"}, {"message.timeout.ms", "50"}});
    EXPECT_EQ(ws_sink_check_config(&accepted.config, errmsg), WS_OK) << errmsg;
}
