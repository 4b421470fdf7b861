/*
 * test_core_json.cpp: format=json, checked against what the Debezium PostgreSQL
 * connector writes through Kafka Connect's JsonConverter: the envelope and its
 * schema, every type mapping with its special values, keys, truncate, logical
 * messages, transaction metadata events, and the per-table schema cache.
 */
#include "core_test_support.hpp"

#include <chrono>
#include <cmath>
#include <regex>

using namespace walship_test;

namespace
{

const std::vector<std::pair<const char *, const char *>> kJson = {{"format", "json"}};

std::vector<std::pair<const char *, const char *>>
json_with(std::vector<std::pair<const char *, const char *>> more)
{
    more.insert(more.begin(), {"format", "json"});
    return more;
}

/* The schema part of an event, as the exact text the encoder wrote. */
std::string schema_text(const std::string &event)
{
    const std::string head = "{\"schema\":";
    size_t end = event.find(",\"payload\":");
    EXPECT_EQ(event.rfind(head, 0), 0u);
    EXPECT_NE(end, std::string::npos);
    return event.substr(head.size(), end - head.size());
}

int64_t now_ms()
{
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

const std::string kSourceSchema =
    "{\"type\":\"struct\",\"fields\":["
    "{\"type\":\"string\",\"optional\":false,\"field\":\"version\"},"
    "{\"type\":\"string\",\"optional\":false,\"field\":\"connector\"},"
    "{\"type\":\"string\",\"optional\":false,\"field\":\"name\"},"
    "{\"type\":\"int64\",\"optional\":false,\"field\":\"ts_ms\"},"
    "{\"type\":\"string\",\"optional\":true,\"name\":\"io.debezium.data.Enum\",\"version\":1,"
    "\"parameters\":{\"allowed\":\"true,first,first_in_data_collection,last_in_data_collection,"
    "last,false,incremental\"},\"default\":\"false\",\"field\":\"snapshot\"},"
    "{\"type\":\"string\",\"optional\":false,\"field\":\"db\"},"
    "{\"type\":\"string\",\"optional\":true,\"field\":\"sequence\"},"
    "{\"type\":\"int64\",\"optional\":true,\"field\":\"ts_us\"},"
    "{\"type\":\"int64\",\"optional\":true,\"field\":\"ts_ns\"},"
    "{\"type\":\"string\",\"optional\":false,\"field\":\"schema\"},"
    "{\"type\":\"string\",\"optional\":false,\"field\":\"table\"},"
    "{\"type\":\"int64\",\"optional\":true,\"field\":\"txId\"},"
    "{\"type\":\"int64\",\"optional\":true,\"field\":\"lsn\"},"
    "{\"type\":\"int64\",\"optional\":true,\"field\":\"xmin\"}"
    "],\"optional\":false,\"name\":\"io.debezium.connector.postgresql.Source\",\"version\":1,"
    "\"field\":\"source\"}";

const std::string kTransactionBlock =
    "{\"type\":\"struct\",\"fields\":["
    "{\"type\":\"string\",\"optional\":false,\"field\":\"id\"},"
    "{\"type\":\"int64\",\"optional\":false,\"field\":\"total_order\"},"
    "{\"type\":\"int64\",\"optional\":false,\"field\":\"data_collection_order\"}"
    "],\"optional\":true,\"name\":\"event.block\",\"version\":1,\"field\":\"transaction\"}";

/* One column's value and field schema from an INSERT of that column alone. */
struct Encoded {
    Json value;
    Json schema;
};

Encoded encode_one(ColumnSpec spec,
                   std::vector<std::pair<const char *, const char *>> options = kJson)
{
    TestEncoder enc(options);
    ChangeBuilder b(WS_OP_INSERT);
    b.after({spec});
    Json event = parse_json(enc.event(b.get()));
    return Encoded{event["payload"]["after"][spec.name],
                   event["schema"].field_schema("after").field_schema(spec.name)};
}

std::string value_of(ColumnSpec spec,
                     std::vector<std::pair<const char *, const char *>> options = kJson)
{
    TestEncoder enc(options);
    ChangeBuilder b(WS_OP_INSERT);
    b.after({spec});
    std::string event = enc.event(b.get());
    parse_json(event); /* must be valid JSON */
    /* the raw text of "after":{"<name>":<value>} */
    std::string head = "\"after\":{\"" + std::string(spec.name) + "\":";
    size_t start = event.find(head);
    EXPECT_NE(start, std::string::npos);
    start += head.size();
    size_t end = event.find("},\"source\":", start);
    return event.substr(start, end - start);
}

const unsigned char kUuid[16] = {0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8,
                                 0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38, 0x0a, 0x11};

} // namespace

TEST(CoreDebezium, InsertEnvelopeAndSchema)
{
    const std::string name = "Anne";
    ChangeBuilder b(WS_OP_INSERT);
    b.after({{"id", INT4OID, v_int(1), true, -1, true}, {"name", TEXTOID, v_text(name)}});
    TestEncoder enc(kJson);
    int64_t before_ms = now_ms();
    std::string text = enc.event(b.get());
    int64_t after_ms = now_ms();

    const std::string value_struct = "{\"type\":\"struct\",\"fields\":["
                                     "{\"type\":\"int32\",\"optional\":false,\"field\":\"id\"},"
                                     "{\"type\":\"string\",\"optional\":true,\"field\":\"name\"}"
                                     "],\"optional\":true,\"name\":\"shop.public.orders.Value\"";
    EXPECT_EQ(schema_text(text),
              "{\"type\":\"struct\",\"fields\":[" + value_struct + ",\"field\":\"before\"}," +
                  value_struct + ",\"field\":\"after\"}," + kSourceSchema + "," +
                  kTransactionBlock +
                  ",{\"type\":\"string\",\"optional\":false,\"field\":\"op\"},"
                  "{\"type\":\"int64\",\"optional\":true,\"field\":\"ts_ms\"},"
                  "{\"type\":\"int64\",\"optional\":true,\"field\":\"ts_us\"},"
                  "{\"type\":\"int64\",\"optional\":true,\"field\":\"ts_ns\"}"
                  "],\"optional\":false,\"name\":\"shop.public.orders.Envelope\",\"version\":2}");

    Json event = parse_json(text);
    EXPECT_EQ(event.keys(), (std::vector<std::string>{"schema", "payload"}));
    const Json &payload = event["payload"];
    EXPECT_EQ(payload.keys(), (std::vector<std::string>{"before", "after", "source", "transaction",
                                                        "op", "ts_ms", "ts_us", "ts_ns"}));
    EXPECT_TRUE(payload["before"].is_null());
    EXPECT_EQ(payload["after"]["id"].integer(), 1);
    EXPECT_EQ(payload["after"]["name"].str(), "Anne");
    EXPECT_TRUE(payload["transaction"].is_null());
    EXPECT_EQ(payload["op"].str(), "c");
    EXPECT_GE(payload["ts_ms"].integer(), before_ms);
    EXPECT_LE(payload["ts_ms"].integer(), after_ms);
    EXPECT_EQ(payload["ts_us"].integer() / 1000, payload["ts_ms"].integer());
    EXPECT_EQ(payload["ts_ns"].integer() / 1000, payload["ts_us"].integer());

    const Json &source = payload["source"];
    EXPECT_EQ(source.keys(),
              (std::vector<std::string>{"version", "connector", "name", "ts_ms", "snapshot", "db",
                                        "sequence", "ts_us", "ts_ns", "schema", "table", "txId",
                                        "lsn", "xmin"}));
    EXPECT_TRUE(std::regex_match(source["version"].str(), std::regex("[0-9]+\\.[0-9]+\\.[0-9]+")))
        << source["version"].str();
    EXPECT_EQ(source["connector"].str(), "postgresql");
    EXPECT_EQ(source["name"].str(), "shop");
    EXPECT_EQ(source["ts_ms"].integer(), 1700000000123);
    EXPECT_EQ(source["ts_us"].integer(), 1700000000123456);
    EXPECT_EQ(source["ts_ns"].integer(), 1700000000123456000);
    EXPECT_EQ(source["snapshot"].str(), "false");
    EXPECT_EQ(source["db"].str(), "shop");
    EXPECT_EQ(source["sequence"].str(), "[null,\"53195829\"]");
    EXPECT_EQ(source["schema"].str(), "public");
    EXPECT_EQ(source["table"].str(), "orders");
    EXPECT_EQ(source["txId"].integer(), 571);
    EXPECT_EQ(source["lsn"].integer(), 53195829);
    EXPECT_TRUE(source["xmin"].is_null());

    /* with the previous transaction's commit LSN known: [that LSN, this change's] */
    b.change().source.prev_commit_lsn = 53190000;
    Json next = parse_json(enc.event(b.get()));
    EXPECT_EQ(next["payload"]["source"]["sequence"].str(), "[\"53190000\",\"53195829\"]");
}

/* source-commit-lsn: walship's source.commit_lsn after Debezium's fields, and its schema */
TEST(CoreDebezium, SourceCommitLsnIsAnOptionalInt64AfterDebeziumsFields)
{
    ChangeBuilder b(WS_OP_INSERT);
    b.after({{"id", INT4OID, v_int(1), true, -1, true}});
    const std::string debezium_tail = "{\"type\":\"int64\",\"optional\":true,\"field\":\"xmin\"}]";
    const std::string walship_tail =
        "{\"type\":\"int64\",\"optional\":true,\"field\":\"xmin\"},"
        "{\"type\":\"int64\",\"optional\":true,\"field\":\"commit_lsn\"}]";
    std::string source_schema = kSourceSchema;
    source_schema.replace(source_schema.find(debezium_tail), debezium_tail.size(), walship_tail);

    TestEncoder with(json_with({{"source-commit-lsn", "on"}}));
    std::string text = with.event(b.get());
    EXPECT_NE(schema_text(text).find("," + source_schema + ","), std::string::npos)
        << schema_text(text);
    Json source = parse_json(text)["payload"]["source"];
    EXPECT_EQ(source.keys(),
              (std::vector<std::string>{"version", "connector", "name", "ts_ms", "snapshot", "db",
                                        "sequence", "ts_us", "ts_ns", "schema", "table", "txId",
                                        "lsn", "xmin", "commit_lsn"}));
    EXPECT_EQ(source["commit_lsn"].integer(), 53195832); /* the commit's end, not the change's */
    EXPECT_EQ(source["lsn"].integer(), 53195829);
    /* the field is the source schema's, as Connect's JsonConverter reads it back */
    EXPECT_EQ(
        parse_json(text)["schema"].field_schema("source").field_schema("commit_lsn")["type"].str(),
        "int64");

    /* without schemas: the payload alone, with the field */
    TestEncoder bare(json_with({{"source-commit-lsn", "true"}, {"json-schema", "false"}}));
    Json payload = parse_json(bare.event(b.get()));
    EXPECT_EQ(payload["source"]["commit_lsn"].integer(), 53195832);
    EXPECT_FALSE(payload.has("schema"));

    /* a snapshot row carries what protobuf gives it: its watermark LSN */
    ChangeBuilder read(WS_OP_READ);
    read.after({{"id", INT4OID, v_int(2), true, -1, true}});
    read.change().source.commit_lsn = 77;
    read.change().source.change_lsn = 77;
    EXPECT_EQ(parse_json(bare.event(read.get()))["source"]["commit_lsn"].integer(), 77);

    /* a logical message: its schema has the field too; none without a commit LSN */
    const std::string content = "x";
    ChangeBuilder message(WS_OP_MESSAGE);
    message.table(nullptr, nullptr);
    message.change().message_prefix = "p";
    message.change().message_content = content.data();
    message.change().message_len = content.size();
    std::string message_text = with.event(message.get());
    EXPECT_NE(schema_text(message_text).find(source_schema), std::string::npos);
    EXPECT_EQ(parse_json(message_text)["payload"]["source"]["commit_lsn"].integer(), 53195832);
    message.change().source.commit_lsn = 0;
    EXPECT_TRUE(parse_json(with.event(message.get()))["payload"]["source"]["commit_lsn"].is_null());

    /* off (the default): Debezium's source, byte for byte */
    TestEncoder off(kJson);
    std::string plain = off.event(b.get());
    EXPECT_EQ(plain.find("commit_lsn"), std::string::npos);
    EXPECT_NE(schema_text(plain).find(kSourceSchema), std::string::npos);
    TestEncoder off_explicit(json_with({{"source-commit-lsn", "off"}}));
    std::string plain_again = off_explicit.event(b.get());
    EXPECT_EQ(plain_again.find("commit_lsn"), std::string::npos);
    EXPECT_EQ(off_explicit.event(message.get()).find("commit_lsn"), std::string::npos);
}

/* source's ts_ms, ts_us and ts_ns are one time: also before 1970, near it, and past 2262 */
TEST(CoreDebezium, SourceTimesAtTheirEdges)
{
    ChangeBuilder b(WS_OP_INSERT);
    b.after({{"id", INT4OID, v_int(1), true, -1, true}});
    TestEncoder enc(json_with({{"json-schema", "false"}}));
    struct Case {
        int64_t time_us, ms, ns;
    } cases[] = {
        {1700000000123456, 1700000000123, 1700000000123456000},
        {1000, 1, 1000000},
        {999, 0, 999000},
        {1, 0, 1000},
        {-1, -1, -1000},
        {-1000, -1, -1000000},
        {-1001, -2, -1001000},
        {-86400000000, -86400000, -86400000000000},
        /* nanoseconds past a long wrap, as in Debezium's Java */
        {INT64_MAX / 1000 + 1, (INT64_MAX / 1000 + 1) / 1000,
         static_cast<int64_t>(static_cast<uint64_t>(INT64_MAX / 1000 + 1) * 1000u)},
    };
    for (const Case &c : cases) {
        b.change().source.commit_time_us = c.time_us;
        Json source = parse_json(enc.event(b.get()))["source"];
        EXPECT_EQ(source["ts_ms"].integer(), c.ms) << c.time_us;
        EXPECT_EQ(source["ts_us"].integer(), c.time_us) << c.time_us;
        EXPECT_EQ(source["ts_ns"].integer(), c.ns) << c.time_us;
    }
}

TEST(CoreDebezium, PayloadAloneWithoutSchemas)
{
    ChangeBuilder b(WS_OP_INSERT);
    b.after({{"id", INT4OID, v_int(1), true}});
    TestEncoder enc(json_with({{"json-schema", "false"}}));
    Json payload = parse_json(enc.event(b.get()));
    EXPECT_EQ(payload.keys(), (std::vector<std::string>{"before", "after", "source", "transaction",
                                                        "op", "ts_ms", "ts_us", "ts_ns"}));
    EXPECT_EQ(payload["after"]["id"].integer(), 1);
    EXPECT_EQ(enc.key(b.get()), "{\"id\":1}");
}

TEST(CoreDebezium, TopicPrefixNamesTheServer)
{
    ChangeBuilder b(WS_OP_INSERT);
    b.after({{"id", INT4OID, v_int(1), true}});
    b.change().source.origin = "eu"; /* Debezium's source block has no origin */
    TestEncoder enc(json_with({{"topic-prefix", "prod"}}));
    Json event = parse_json(enc.event(b.get()));
    EXPECT_EQ(event["schema"]["name"].str(), "prod.public.orders.Envelope");
    EXPECT_EQ(event["schema"].field_schema("after")["name"].str(), "prod.public.orders.Value");
    EXPECT_EQ(event["payload"]["source"]["name"].str(), "prod");
    EXPECT_EQ(event["payload"]["source"]["db"].str(), "shop");
    EXPECT_FALSE(event["payload"]["source"].has("origin"));
    Json key = parse_json(enc.key(b.get()));
    EXPECT_EQ(key["schema"]["name"].str(), "prod.public.orders.Key");
}

TEST(CoreDebezium, UpdateDeleteAndReadOperations)
{
    const std::string old_name = "Anne", new_name = "Anne Marie";
    TestEncoder enc(kJson);
    ChangeBuilder update(WS_OP_UPDATE);
    update.before({{"id", INT4OID, v_int(1), true}, {"name", TEXTOID, v_text(old_name)}});
    update.after({{"id", INT4OID, v_int(1), true}, {"name", TEXTOID, v_text(new_name)}});
    Json payload = parse_json(enc.event(update.get()))["payload"];
    EXPECT_EQ(payload["op"].str(), "u");
    EXPECT_EQ(payload["before"]["name"].str(), "Anne");
    EXPECT_EQ(payload["after"]["name"].str(), "Anne Marie");

    TestEncoder no_before(json_with({{"include-before", "false"}}));
    payload = parse_json(no_before.event(update.get()))["payload"];
    EXPECT_TRUE(payload["before"].is_null());

    ChangeBuilder del(WS_OP_DELETE);
    del.before({{"id", INT4OID, v_int(1), true}, {"name", TEXTOID, v_text(old_name)}});
    payload = parse_json(enc.event(del.get()))["payload"];
    EXPECT_EQ(payload["op"].str(), "d");
    EXPECT_EQ(payload["before"]["id"].integer(), 1);
    EXPECT_TRUE(payload["after"].is_null());

    ChangeBuilder read(WS_OP_READ);
    read.after({{"id", INT4OID, v_int(1), true}, {"name", TEXTOID, v_text(old_name)}});
    payload = parse_json(enc.event(read.get()))["payload"];
    EXPECT_EQ(payload["op"].str(), "r");
    EXPECT_EQ(payload["source"]["snapshot"].str(), "incremental");
}

TEST(CoreDebezium, IntegersFloatsAndBooleans)
{
    Encoded e = encode_one({"s", INT2OID, v_int(-5)});
    EXPECT_EQ(e.value.num(), "-5");
    EXPECT_EQ(e.schema["type"].str(), "int16");
    EXPECT_EQ(encode_one({"i", INT4OID, v_int(2147483647)}).schema["type"].str(), "int32");
    e = encode_one({"b", INT8OID, v_int(-9223372036854775807LL - 1), false, -1, true});
    EXPECT_EQ(e.value.num(), "-9223372036854775808");
    EXPECT_EQ(e.schema["type"].str(), "int64");
    EXPECT_FALSE(e.schema["optional"].boolean);
    e = encode_one({"o", OIDOID, v_int(4294967295LL)});
    EXPECT_EQ(e.value.num(), "4294967295");
    EXPECT_EQ(e.schema["type"].str(), "int64");

    e = encode_one({"r", FLOAT4OID, v_double(static_cast<double>(3.14f))});
    EXPECT_EQ(e.value.num(), "3.14");
    EXPECT_EQ(e.schema["type"].str(), "float");
    e = encode_one({"d", FLOAT8OID, v_double(0.1)});
    EXPECT_EQ(e.value.num(), "0.1");
    EXPECT_EQ(e.schema["type"].str(), "double");
    EXPECT_EQ(value_of({"d", FLOAT8OID, v_double(1e21)}), "1.0E21");
    EXPECT_EQ(value_of({"d", FLOAT8OID, v_double(NAN)}), "\"NaN\"");
    EXPECT_EQ(value_of({"d", FLOAT8OID, v_double(HUGE_VAL)}), "\"Infinity\"");
    EXPECT_EQ(value_of({"d", FLOAT4OID, v_double(-HUGE_VAL)}), "\"-Infinity\"");

    e = encode_one({"flag", BOOLOID, v_bool(false)});
    EXPECT_EQ(e.value.type, Json::Type::Bool);
    EXPECT_FALSE(e.value.boolean);
    EXPECT_EQ(e.schema["type"].str(), "boolean");
}

TEST(CoreDebezium, TextBytesUuidAndJson)
{
    const std::string tricky = "say \"hi\"\\\n\ttab \x01 \xC3\xA9 end";
    Encoded e = encode_one({"t", VARCHAROID, v_text(tricky)});
    EXPECT_EQ(e.value.str(), tricky);
    EXPECT_EQ(e.schema["type"].str(), "string");
    EXPECT_FALSE(e.schema.has("name"));

    const std::string invalid_utf8 = "bad \xff byte";
    EXPECT_EQ(encode_one({"t", TEXTOID, v_text(invalid_utf8)}).value.str(),
              "bad \xEF\xBF\xBD byte");

    const std::string bytes("\x00\x01\xff", 3);
    e = encode_one({"b", BYTEAOID, v_bytes(bytes)});
    EXPECT_EQ(e.value.str(), "AAH/");
    EXPECT_EQ(e.schema["type"].str(), "bytes");

    e = encode_one({"u", UUIDOID, v_uuid(kUuid)});
    EXPECT_EQ(e.value.str(), "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
    EXPECT_EQ(e.schema["type"].str(), "string");
    EXPECT_EQ(e.schema["name"].str(), "io.debezium.data.Uuid");
    EXPECT_EQ(e.schema["version"].integer(), 1);

    const std::string doc = "{\"a\": [1, \"x\"]}";
    e = encode_one({"j", JSONBOID, v_json(doc)});
    EXPECT_EQ(e.value.str(), doc); /* the JSON text as a string, as Debezium sends it */
    EXPECT_EQ(e.schema["name"].str(), "io.debezium.data.Json");
    EXPECT_EQ(encode_one({"j", JSONOID, v_json(doc)}).schema["name"].str(),
              "io.debezium.data.Json");

    const std::string inet = "10.0.0.1/8";
    e = encode_one({"addr", 869, v_other(inet)});
    EXPECT_EQ(e.value.str(), inet);
    EXPECT_EQ(e.schema["type"].str(), "string");
}

TEST(CoreDebezium, Dates)
{
    Encoded e = encode_one({"d", DATEOID, v_date(19723)});
    EXPECT_EQ(e.value.integer(), 19723);
    EXPECT_EQ(e.schema["type"].str(), "int32");
    EXPECT_EQ(e.schema["name"].str(), "io.debezium.time.Date");
    EXPECT_EQ(e.schema["version"].integer(), 1);
    /* 4714-11-24 BC, the first date PostgreSQL accepts */
    EXPECT_EQ(value_of({"d", DATEOID, v_date(-2440588)}), "-2440588");
    EXPECT_EQ(value_of({"d", DATEOID, v_date(WS_DATE_POS_INFINITY)}), "2147483647");
    EXPECT_EQ(value_of({"d", DATEOID, v_date(WS_DATE_NEG_INFINITY)}), "-2147483648");
}

TEST(CoreDebezium, TimesFollowAdaptivePrecision)
{
    const std::string text = "13:51:30.123";
    Encoded e = encode_one({"t", TIMEOID, v_time(49890123000, text), false, 3});
    EXPECT_EQ(e.value.integer(), 49890123);
    EXPECT_EQ(e.schema["type"].str(), "int32");
    EXPECT_EQ(e.schema["name"].str(), "io.debezium.time.Time");
    e = encode_one({"t", TIMEOID, v_time(49890123456, text)});
    EXPECT_EQ(e.value.integer(), 49890123456);
    EXPECT_EQ(e.schema["type"].str(), "int64");
    EXPECT_EQ(e.schema["name"].str(), "io.debezium.time.MicroTime");
    EXPECT_EQ(encode_one({"t", TIMEOID, v_time(0, text), false, 4}).schema["name"].str(),
              "io.debezium.time.MicroTime");

    const std::string tz_text = "13:51:30.123789+02";
    e = encode_one({"tz", TIMETZOID, v_timetz(49890123789, -7200, tz_text)});
    EXPECT_EQ(e.value.str(), "11:51:30.123789Z");
    EXPECT_EQ(e.schema["type"].str(), "string");
    EXPECT_EQ(e.schema["name"].str(), "io.debezium.time.ZonedTime");
}

TEST(CoreDebezium, Timestamps)
{
    const int64_t t = 1704164645123456; /* 2024-01-02 03:04:05.123456 */
    Encoded e = encode_one({"ts", TIMESTAMPOID, v_timestamp(t - 456), false, 3});
    EXPECT_EQ(e.value.integer(), 1704164645123);
    EXPECT_EQ(e.schema["name"].str(), "io.debezium.time.Timestamp");
    EXPECT_EQ(e.schema["type"].str(), "int64");
    e = encode_one({"ts", TIMESTAMPOID, v_timestamp(t)});
    EXPECT_EQ(e.value.integer(), t);
    EXPECT_EQ(e.schema["name"].str(), "io.debezium.time.MicroTimestamp");
    EXPECT_EQ(value_of({"ts", TIMESTAMPOID, v_timestamp(-1)}), "-1");

    /* Debezium's documented sentinels for 'infinity' and '-infinity' */
    EXPECT_EQ(value_of({"ts", TIMESTAMPOID, v_timestamp(WS_TIMESTAMP_POS_INFINITY)}),
              "9223372036825200000");
    EXPECT_EQ(value_of({"ts", TIMESTAMPOID, v_timestamp(WS_TIMESTAMP_NEG_INFINITY)}),
              "-9223372036832400000");
    EXPECT_EQ(value_of({"ts", TIMESTAMPOID, v_timestamp(WS_TIMESTAMP_POS_INFINITY), false, 2}),
              "9223372036825200");

    e = encode_one({"tz", TIMESTAMPTZOID, v_timestamptz(t)});
    EXPECT_EQ(e.value.str(), "2024-01-02T03:04:05.123456Z");
    EXPECT_EQ(e.schema["type"].str(), "string");
    EXPECT_EQ(e.schema["name"].str(), "io.debezium.time.ZonedTimestamp");
    /* the fraction is padded to the column's precision, as Debezium does */
    EXPECT_EQ(value_of({"tz", TIMESTAMPTZOID, v_timestamptz(t - 123456)}),
              "\"2024-01-02T03:04:05.000000Z\"");
    EXPECT_EQ(value_of({"tz", TIMESTAMPTZOID, v_timestamptz(t - 456), false, 3}),
              "\"2024-01-02T03:04:05.123Z\"");
    EXPECT_EQ(value_of({"tz", TIMESTAMPTZOID, v_timestamptz(t - 123456), false, 0}),
              "\"2024-01-02T03:04:05Z\"");
    EXPECT_EQ(value_of({"tz", TIMESTAMPTZOID, v_timestamptz(WS_TIMESTAMP_POS_INFINITY)}),
              "\"infinity\"");
    EXPECT_EQ(value_of({"tz", TIMESTAMPTZOID, v_timestamptz(WS_TIMESTAMP_NEG_INFINITY)}),
              "\"-infinity\"");
    /* 44 BC: ISO-8601 astronomical years, as java.time prints them */
    EXPECT_EQ(value_of({"tz", TIMESTAMPTZOID, v_timestamptz(-63517780800000000)}),
              "\"-0043-03-15T12:00:00.000000Z\"");
    /* a timestamptz handed over as a plain timestamp (a caller of the core before the
     * timestamptz kind) still reads as the column's type says */
    EXPECT_EQ(value_of({"tz", TIMESTAMPTZOID, v_timestamp(t)}), "\"2024-01-02T03:04:05.123456Z\"");
}

TEST(CoreDebezium, Intervals)
{
    const int64_t h = 3600000000, m = 60000000;
    const std::string text = "1 year 2 mons 3 days 04:05:06.78";
    ColumnSpec spec{"i", INTERVALOID, v_interval(14, 3, 4 * h + 5 * m + 6780000, text)};
    Encoded e = encode_one(spec);
    EXPECT_EQ(e.value.integer(), 37091106780000);
    EXPECT_EQ(e.schema["type"].str(), "int64");
    EXPECT_EQ(e.schema["name"].str(), "io.debezium.time.MicroDuration");
    e = encode_one(spec, json_with({{"interval-handling", "string"}}));
    EXPECT_EQ(e.value.str(), "P1Y2M3DT4H5M6.78S");
    EXPECT_EQ(e.schema["type"].str(), "string");
    EXPECT_EQ(e.schema["name"].str(), "io.debezium.time.Interval");
}

TEST(CoreDebezium, NumericAsString)
{
    const std::string v = "-123.450", nan = "NaN", inf = "Infinity", ninf = "-Infinity";
    Encoded e = encode_one({"n", NUMERICOID, v_numeric(v), false, numeric_typmod(10, 3)});
    EXPECT_EQ(e.value.str(), "-123.450");
    EXPECT_EQ(e.schema["type"].str(), "string");
    EXPECT_FALSE(e.schema.has("name"));
    /* Debezium's names for the special values in string mode */
    EXPECT_EQ(value_of({"n", NUMERICOID, v_numeric(nan)}), "\"NAN\"");
    EXPECT_EQ(value_of({"n", NUMERICOID, v_numeric(inf)}), "\"POSITIVE_INFINITY\"");
    EXPECT_EQ(value_of({"n", NUMERICOID, v_numeric(ninf)}), "\"NEGATIVE_INFINITY\"");
}

TEST(CoreDebezium, NumericAsDouble)
{
    const auto options = json_with({{"decimal-handling", "double"}});
    const std::string v = "123.45", nan = "NaN", ninf = "-Infinity",
                      huge = "1" + std::string(400, '0');
    Encoded e = encode_one({"n", NUMERICOID, v_numeric(v)}, options);
    EXPECT_EQ(e.value.num(), "123.45");
    EXPECT_EQ(e.schema["type"].str(), "double");
    EXPECT_EQ(value_of({"n", NUMERICOID, v_numeric(nan)}, options), "\"NaN\"");
    EXPECT_EQ(value_of({"n", NUMERICOID, v_numeric(ninf)}, options), "\"-Infinity\"");
    EXPECT_EQ(value_of({"n", NUMERICOID, v_numeric(huge)}, options), "\"Infinity\"");
}

TEST(CoreDebezium, NumericPrecise)
{
    const auto options = json_with({{"decimal-handling", "precise"}});
    const std::string v = "123.45", neg = "-123.45", nan = "NaN";
    Encoded e = encode_one({"n", NUMERICOID, v_numeric(v), false, numeric_typmod(10, 2)}, options);
    EXPECT_EQ(e.value.str(), "MDk="); /* unscaled 12345, big-endian two's complement */
    EXPECT_EQ(e.schema["type"].str(), "bytes");
    EXPECT_EQ(e.schema["name"].str(), "org.apache.kafka.connect.data.Decimal");
    EXPECT_EQ(e.schema["version"].integer(), 1);
    EXPECT_EQ(e.schema["parameters"].keys(),
              (std::vector<std::string>{"scale", "connect.decimal.precision"}));
    EXPECT_EQ(e.schema["parameters"]["scale"].str(), "2");
    EXPECT_EQ(e.schema["parameters"]["connect.decimal.precision"].str(), "10");
    EXPECT_EQ(value_of({"n", NUMERICOID, v_numeric(neg), false, numeric_typmod(10, 2)}, options),
              "\"z8c=\"");
    /* Debezium cannot put NaN in a Decimal; walship writes null rather than failing */
    EXPECT_EQ(value_of({"n", NUMERICOID, v_numeric(nan), false, numeric_typmod(10, 2)}, options),
              "null");

    /* numeric without typmod: VariableScaleDecimal, trailing zeros stripped like Debezium */
    const std::string trailing = "1.500", zero = "0", big = "1500";
    e = encode_one({"n", NUMERICOID, v_numeric(trailing)}, options);
    EXPECT_EQ(e.value.keys(), (std::vector<std::string>{"scale", "value"}));
    EXPECT_EQ(e.value["scale"].integer(), 1);
    EXPECT_EQ(e.value["value"].str(), "Dw==");
    EXPECT_EQ(e.schema["type"].str(), "struct");
    EXPECT_EQ(e.schema["name"].str(), "io.debezium.data.VariableScaleDecimal");
    EXPECT_EQ(e.schema["doc"].str(), "Variable scaled decimal");
    EXPECT_EQ(e.schema.field_schema("scale")["type"].str(), "int32");
    EXPECT_EQ(e.schema.field_schema("value")["type"].str(), "bytes");
    EXPECT_EQ(value_of({"n", NUMERICOID, v_numeric(zero)}, options),
              "{\"scale\":0,\"value\":\"AA==\"}");
    EXPECT_EQ(value_of({"n", NUMERICOID, v_numeric(big)}, options),
              "{\"scale\":0,\"value\":\"Bdw=\"}");
    EXPECT_EQ(value_of({"n", NUMERICOID, v_numeric(nan)}, options), "null");
}

TEST(CoreDebezium, Arrays)
{
    const std::string ints = "{1,NULL,3}";
    Encoded e = encode_one({"a", INT4ARRAYOID, v_other(ints), false, -1, false, INT4OID});
    EXPECT_EQ(e.schema["type"].str(), "array");
    EXPECT_EQ(e.schema["items"]["type"].str(), "int32");
    EXPECT_TRUE(e.schema["items"]["optional"].boolean);
    EXPECT_EQ(value_of({"a", INT4ARRAYOID, v_other(ints), false, -1, false, INT4OID}),
              "[1,null,3]");

    const std::string texts =
        "{plain,\"with,comma\",\"q\\\"uote\",\"back\\\\slash\",NULL,\"NULL\"}";
    e = encode_one({"a", TEXTARRAYOID, v_other(texts), false, -1, false, TEXTOID});
    ASSERT_EQ(e.value.items.size(), 6u);
    EXPECT_EQ(e.value[0].str(), "plain");
    EXPECT_EQ(e.value[1].str(), "with,comma");
    EXPECT_EQ(e.value[2].str(), "q\"uote");
    EXPECT_EQ(e.value[3].str(), "back\\slash");
    EXPECT_TRUE(e.value[4].is_null());
    EXPECT_EQ(e.value[5].str(), "NULL");
    EXPECT_EQ(e.schema["items"]["type"].str(), "string");

    const std::string bools = "{t,f}", floats = "{1.5,NaN,-Infinity}", empty = "{}";
    EXPECT_EQ(value_of({"a", 1000, v_other(bools), false, -1, false, BOOLOID}), "[true,false]");
    EXPECT_EQ(value_of({"a", 1022, v_other(floats), false, -1, false, FLOAT8OID}),
              "[1.5,\"NaN\",\"-Infinity\"]");
    EXPECT_EQ(value_of({"a", INT4ARRAYOID, v_other(empty), false, -1, false, INT4OID}), "[]");

    const std::string numerics = "{1.50,-2}";
    EXPECT_EQ(value_of({"a", 1231, v_other(numerics), false, -1, false, NUMERICOID}),
              "[\"1.50\",\"-2\"]");
    const auto precise = json_with({{"decimal-handling", "precise"}});
    e = encode_one({"a", 1231, v_other(numerics), false, numeric_typmod(5, 2), false, NUMERICOID},
                   precise);
    EXPECT_EQ(e.value[0].str(), "AJY=");
    EXPECT_EQ(e.value[1].str(), "/zg=");
    EXPECT_EQ(e.schema["items"]["name"].str(), "org.apache.kafka.connect.data.Decimal");

    const std::string byteas = "{\"\\\\x0102\",NULL}";
    e = encode_one({"a", 1001, v_other(byteas), false, -1, false, BYTEAOID});
    EXPECT_EQ(e.value[0].str(), "AQI=");
    EXPECT_TRUE(e.value[1].is_null());
    EXPECT_EQ(e.schema["items"]["type"].str(), "bytes");

    /* dates as Debezium's Date, days since 1970 (as a date column's values) */
    const std::string dates = "{2024-01-01,infinity,0044-03-15 BC}";
    e = encode_one({"a", 1182, v_other(dates), false, -1, false, DATEOID});
    EXPECT_EQ(e.value[0].num(), "19723");
    EXPECT_EQ(e.value[1].num(), "2147483647");
    EXPECT_EQ(e.value[2].num(), "-735160");
    EXPECT_EQ(e.schema["items"]["type"].str(), "int32");
    EXPECT_EQ(e.schema["items"]["name"].str(), "io.debezium.time.Date");

    /* other temporal elements stay strings */
    const std::string times = "{12:00:00}";
    e = encode_one({"a", 1183, v_other(times), false, -1, false, TIMEOID});
    EXPECT_EQ(e.value[0].str(), "12:00:00");
    EXPECT_EQ(e.schema["items"]["type"].str(), "string");

    /* multi-dimensional arrays are sent as their text */
    const std::string matrix = "{{1,2},{3,4}}";
    EXPECT_EQ(value_of({"a", INT4ARRAYOID, v_other(matrix), false, -1, false, INT4OID}),
              "\"{{1,2},{3,4}}\"");
}

TEST(CoreDebezium, UnchangedToastUsesDebeziumsPlaceholder)
{
    EXPECT_EQ(value_of({"t", TEXTOID, v_toast()}), "\"__debezium_unavailable_value\"");
    EXPECT_EQ(value_of({"j", JSONBOID, v_toast()}), "\"__debezium_unavailable_value\"");
    EXPECT_EQ(value_of({"b", BYTEAOID, v_toast()}), "\"X19kZWJleml1bV91bmF2YWlsYWJsZV92YWx1ZQ==\"");
    EXPECT_EQ(value_of({"a", TEXTARRAYOID, v_toast(), false, -1, false, TEXTOID}),
              "[\"__debezium_unavailable_value\"]");
    /* NULL stays null: the two are different things */
    EXPECT_EQ(value_of({"t", TEXTOID, v_null()}), "null");
}

TEST(CoreDebezium, OldRowCarriesEveryFieldOfTheTable)
{
    /* REPLICA IDENTITY DEFAULT: a DELETE logs only the key; the shim passes only it */
    const std::string name = "Anne";
    TestEncoder enc(kJson);
    /* the table as the shim's relation cache describes it: every column, the key as old tuple */
    ChangeBuilder shape(WS_OP_UPDATE);
    shape.after({{"id", INT4OID, v_int(1), true, -1, true},
                 {"name", TEXTOID, v_text(name), false, -1, true},
                 {"qty", INT4OID, v_int(3), false, -1, true},
                 {"note", TEXTOID, v_null()}});
    shape.before({{"id", INT4OID, v_int(1), true, -1, true}});
    shape.with_table(enc.get());
    ChangeBuilder insert(WS_OP_INSERT);
    insert.after({{"id", INT4OID, v_int(1), true, -1, true},
                  {"name", TEXTOID, v_text(name), false, -1, true},
                  {"qty", INT4OID, v_int(3), false, -1, true},
                  {"note", TEXTOID, v_null()}});
    insert.change().table = shape.get()->table;
    std::string inserted = enc.event(insert.get());

    ChangeBuilder del(WS_OP_DELETE);
    del.before({{"id", INT4OID, v_int(1), true, -1, true}});
    del.change().table = shape.get()->table;
    std::string deleted = enc.event(del.get());
    EXPECT_EQ(schema_text(deleted), schema_text(inserted));
    /* JsonConverter rejects null in required fields: Debezium writes zero values there */
    Json before = parse_json(deleted)["payload"]["before"];
    EXPECT_EQ(before.keys(), (std::vector<std::string>{"id", "name", "qty", "note"}));
    EXPECT_EQ(before["id"].integer(), 1);
    EXPECT_EQ(before["name"].str(), "");
    EXPECT_EQ(before["qty"].integer(), 0);
    EXPECT_TRUE(before["note"].is_null());
    EXPECT_EQ(parse_json(enc.key(del.get()))["payload"]["id"].integer(), 1);

    /* an UPDATE that changed the key logs the old key alone as well */
    ChangeBuilder update(WS_OP_UPDATE);
    update.before({{"id", INT4OID, v_int(1), true, -1, true}});
    update.after({{"id", INT4OID, v_int(2), true, -1, true},
                  {"name", TEXTOID, v_text(name), false, -1, true},
                  {"qty", INT4OID, v_int(3), false, -1, true},
                  {"note", TEXTOID, v_null()}});
    update.change().table = shape.get()->table;
    before = parse_json(enc.event(update.get()))["payload"]["before"];
    EXPECT_EQ(before.keys(), (std::vector<std::string>{"id", "name", "qty", "note"}));

    /* a caller without the table's handle only knows the key column */
    del.change().table = nullptr;
    TestEncoder fresh(kJson);
    Json event = parse_json(fresh.event(del.get()));
    EXPECT_EQ(event["payload"]["before"].keys(), (std::vector<std::string>{"id"}));
    EXPECT_EQ(event["schema"].field_schema("before")["fields"].items.size(), 1u);
}

TEST(CoreDebezium, Keys)
{
    const std::string name = "Anne";
    TestEncoder enc(kJson);
    ChangeBuilder b(WS_OP_INSERT);
    b.after({{"name", TEXTOID, v_text(name)}, {"id", INT4OID, v_int(1), true, -1, true}});
    EXPECT_EQ(enc.key(b.get()),
              "{\"schema\":{\"type\":\"struct\",\"fields\":[{\"type\":\"int32\",\"optional\":"
              "false,\"field\":\"id\"}],\"optional\":false,\"name\":\"shop.public.orders.Key\"},"
              "\"payload\":{\"id\":1}}");

    ChangeBuilder keyless(WS_OP_INSERT);
    keyless.after({{"name", TEXTOID, v_text(name)}});
    EXPECT_EQ(enc.key(keyless.get()), "");
    ChangeBuilder nothing(WS_OP_DELETE); /* REPLICA IDENTITY NOTHING: no old row */
    EXPECT_EQ(enc.key(nothing.get()), "");
}

TEST(CoreDebezium, Truncate)
{
    TestEncoder enc(kJson);
    const char *tables[] = {"public.orders"};
    ChangeBuilder truncate(WS_OP_TRUNCATE);
    truncate.change().truncated_tables = tables;
    truncate.change().ntruncated = 1;

    /* without the table's handle: the table's columns are unknown */
    Json event = parse_json(enc.event(truncate.get()));
    EXPECT_EQ(event["payload"]["op"].str(), "t");
    EXPECT_TRUE(event["payload"]["before"].is_null());
    EXPECT_TRUE(event["payload"]["after"].is_null());
    EXPECT_EQ(event["payload"]["source"]["table"].str(), "orders");
    EXPECT_EQ(event["schema"].field_schema("after")["fields"].items.size(), 0u);
    EXPECT_EQ(enc.key(truncate.get()), "");

    /* with the table's handle, as the shim passes it: the table's schema */
    ChangeBuilder insert(WS_OP_INSERT);
    insert.after({{"id", INT4OID, v_int(1), true, -1, true}});
    insert.with_table(enc.get());
    std::string inserted = enc.event(insert.get());
    truncate.change().table = insert.get()->table;
    std::string truncated = enc.event(truncate.get());
    EXPECT_EQ(schema_text(truncated), schema_text(inserted));
    /* and the truncate did not evict the table's schema */
    EXPECT_EQ(schema_text(enc.event(insert.get())), schema_text(inserted));
}

TEST(CoreDebezium, LogicalMessages)
{
    const std::string content = "Bar";
    ChangeBuilder b(WS_OP_MESSAGE);
    b.table(nullptr, nullptr);
    b.change().message_prefix = "foo";
    b.change().message_content = content.data();
    b.change().message_len = content.size();
    b.change().message_transactional = true;
    TestEncoder enc(kJson);
    Json event = parse_json(enc.event(b.get()));
    EXPECT_EQ(event["schema"]["name"].str(), "io.debezium.connector.postgresql.MessageValue");
    EXPECT_EQ(event["schema"].field_schema("message")["name"].str(),
              "io.debezium.connector.postgresql.Message");
    const Json &payload = event["payload"];
    EXPECT_EQ(payload.keys(),
              (std::vector<std::string>{"op", "ts_ms", "source", "transaction", "message"}));
    EXPECT_EQ(payload["op"].str(), "m");
    EXPECT_EQ(payload["message"]["prefix"].str(), "foo");
    EXPECT_EQ(payload["message"]["content"].str(), "QmFy");
    EXPECT_EQ(payload["source"]["schema"].str(), "");
    EXPECT_EQ(payload["source"]["table"].str(), "");
    EXPECT_EQ(payload["source"]["txId"].integer(), 571);

    EXPECT_EQ(enc.key(b.get()),
              "{\"schema\":{\"type\":\"struct\",\"fields\":[{\"type\":\"string\",\"optional\":"
              "true,\"field\":\"prefix\"}],\"optional\":false,\"name\":"
              "\"io.debezium.connector.postgresql.MessageKey\",\"version\":1},\"payload\":{"
              "\"prefix\":\"foo\"}}");

    /* a non-transactional message has no transaction and no commit time */
    b.change().message_transactional = false;
    b.change().source.xid = 0;
    b.change().source.commit_time_us = 0;
    int64_t start = now_ms();
    Json source = parse_json(enc.event(b.get()))["payload"]["source"];
    EXPECT_TRUE(source["txId"].is_null());
    EXPECT_GE(source["ts_ms"].integer(), start);
}

TEST(CoreDebezium, TransactionMetadataEvents)
{
    TestEncoder enc(json_with({{"json-schema", "false"}}));
    ChangeBuilder begin(WS_OP_BEGIN);
    begin.table(nullptr, nullptr);
    /* ids as Debezium's: xid and the LSN of the record (BEGIN: its first event's) */
    EXPECT_EQ(enc.event(begin.get()), "{\"status\":\"BEGIN\",\"id\":\"571:53195829\","
                                      "\"event_count\":null,\"data_collections\":null,"
                                      "\"ts_ms\":1700000000123}");
    ChangeBuilder commit(WS_OP_COMMIT);
    commit.table(nullptr, nullptr);
    commit.change().event_count = 3;
    const ws_collection_count counts[] = {{"public.orders", 2}, {"public.items", 1}};
    commit.change().collections = counts;
    commit.change().ncollections = 2;
    /* END: the commit's end LSN, and the events per table */
    EXPECT_EQ(enc.event(commit.get()),
              "{\"status\":\"END\",\"id\":\"571:53195832\",\"event_count\":3,"
              "\"data_collections\":[{\"data_collection\":\"public.orders\",\"event_count\":2},"
              "{\"data_collection\":\"public.items\",\"event_count\":1}],"
              "\"ts_ms\":1700000000123}");

    /* a row event's transaction block */
    ChangeBuilder row(WS_OP_INSERT);
    row.after({{"id", INT4OID, v_int(1), true}});
    row.change().total_order = 3;
    row.change().collection_order = 2;
    Json block = parse_json(enc.event(row.get()))["transaction"];
    EXPECT_EQ(block["id"].str(), "571:53195829");
    EXPECT_EQ(block["total_order"].integer(), 3);
    EXPECT_EQ(block["data_collection_order"].integer(), 2);
    EXPECT_EQ(enc.key(commit.get()), "{\"id\":\"571:53195832\"}");

    TestEncoder with_schema(kJson);
    Json event = parse_json(with_schema.event(commit.get()));
    EXPECT_EQ(event["schema"]["name"].str(),
              "io.debezium.connector.common.TransactionMetadataValue");
    EXPECT_EQ(event["schema"].field_schema("data_collections")["items"]["name"].str(),
              "event.collection");
    EXPECT_EQ(parse_json(with_schema.key(commit.get()))["schema"]["name"].str(),
              "io.debezium.connector.common.TransactionMetadataKey");
}

TEST(CoreDebezium, SchemaCacheFollowsTableChanges)
{
    TestEncoder enc(kJson);
    ChangeBuilder v1(WS_OP_INSERT);
    v1.after({{"id", INT4OID, v_int(1), true, -1, true}});
    Json first = parse_json(enc.event(v1.get()));
    EXPECT_EQ(first["schema"].field_schema("after")["fields"].items.size(), 1u);

    /* ALTER TABLE ADD COLUMN: same relation, one more column */
    const std::string note = "n";
    ChangeBuilder v2(WS_OP_INSERT);
    v2.after({{"id", INT4OID, v_int(2), true, -1, true}, {"note", TEXTOID, v_text(note)}});
    Json second = parse_json(enc.event(v2.get()));
    EXPECT_EQ(second["schema"].field_schema("after")["fields"].items.size(), 2u);

    /* ALTER COLUMN TYPE: the typmod changes the Decimal parameters */
    const std::string amount = "1.5";
    auto precise = json_with({{"decimal-handling", "precise"}});
    TestEncoder penc(precise);
    ChangeBuilder n1(WS_OP_INSERT);
    n1.after({{"amount", NUMERICOID, v_numeric(amount), false, numeric_typmod(10, 2)}});
    ChangeBuilder n2(WS_OP_INSERT);
    n2.after({{"amount", NUMERICOID, v_numeric(amount), false, numeric_typmod(12, 4)}});
    Json a = parse_json(penc.event(n1.get()));
    Json b = parse_json(penc.event(n2.get()));
    EXPECT_EQ(a["schema"].field_schema("after").field_schema("amount")["parameters"]["scale"].str(),
              "2");
    EXPECT_EQ(b["schema"].field_schema("after").field_schema("amount")["parameters"]["scale"].str(),
              "4");
    EXPECT_EQ(b["payload"]["after"]["amount"].str(), "Opg="); /* 15000 at scale 4 */

    /* ALTER TABLE RENAME: same relation OID, new name */
    ChangeBuilder renamed(WS_OP_INSERT);
    renamed.after({{"id", INT4OID, v_int(3), true, -1, true}, {"note", TEXTOID, v_text(note)}});
    renamed.table("public", "purchases");
    Json third = parse_json(enc.event(renamed.get()));
    EXPECT_EQ(third["schema"]["name"].str(), "shop.public.purchases.Envelope");
}

TEST(CoreDebezium, NamesWithQuotesAreEscaped)
{
    ChangeBuilder b(WS_OP_INSERT);
    b.after({{"we\"ird", INT4OID, v_int(1), true}});
    b.table("My \"Schema\"", "Tab\\le");
    TestEncoder enc(kJson);
    Json event = parse_json(enc.event(b.get()));
    EXPECT_EQ(event["schema"]["name"].str(), "shop.My \"Schema\".Tab\\le.Envelope");
    EXPECT_EQ(event["payload"]["after"]["we\"ird"].integer(), 1);
    EXPECT_EQ(parse_json(enc.key(b.get()))["payload"]["we\"ird"].integer(), 1);
}

TEST(CoreDebezium, VarintFramingWorksForJsonToo)
{
    ChangeBuilder b(WS_OP_INSERT);
    b.after({{"id", INT4OID, v_int(1), true}});
    TestEncoder enc(json_with({{"framing", "varint"}}));
    std::string framed = enc.event(b.get());
    size_t len = 0, shift = 0, pos = 0;
    for (;; pos++, shift += 7) {
        auto byte = static_cast<unsigned char>(framed[pos]);
        len |= static_cast<size_t>(byte & 0x7F) << shift;
        if ((byte & 0x80) == 0)
            break;
    }
    pos++;
    ASSERT_EQ(framed.size() - pos, len);
    EXPECT_EQ(parse_json(framed.substr(pos))["payload"]["op"].str(), "c");
}

TEST(CoreDebezium, HundredMegabyteValueEncodes)
{
    std::string huge(100u * 1024 * 1024, 'v');
    huge[12345] = '"'; /* something to escape in the middle */
    ChangeBuilder b(WS_OP_INSERT);
    b.after({{"id", INT4OID, v_int(1), true}, {"doc", TEXTOID, v_text(huge)}});
    TestEncoder enc(kJson);
    std::string event = enc.event(b.get());
    EXPECT_GT(event.size(), huge.size());
    EXPECT_EQ(parse_json(event)["payload"]["after"]["doc"].str().size(), huge.size());

    const std::string small = "small";
    ChangeBuilder next(WS_OP_INSERT);
    next.after({{"id", INT4OID, v_int(2), true}, {"doc", TEXTOID, v_text(small)}});
    EXPECT_EQ(parse_json(enc.event(next.get()))["payload"]["after"]["doc"].str(), "small");
}

/* ---------------------------------------------------------------- as Debezium 3.4 */

TEST(CoreDebezium, EnumsAreDebeziumEnumsWithTheirLabels)
{
    const char *const labels[] = {"sad", "ok", "happy"};
    const std::string mood = "ok";
    ChangeBuilder b(WS_OP_INSERT);
    b.after({{"id", INT4OID, v_int(1), true, -1, true},
             {"mood", 16384, v_other(mood), false, -1, false, 0, "mood", nullptr, {}, labels, 3}});
    TestEncoder enc(kJson);
    Json event = parse_json(enc.event(b.get()));
    const Json &field = event["schema"].field_schema("after")["fields"][1];
    EXPECT_EQ(field["type"].str(), "string");
    EXPECT_EQ(field["name"].str(), "io.debezium.data.Enum");
    EXPECT_EQ(field["version"].integer(), 1);
    EXPECT_EQ(field["parameters"]["allowed"].str(), "sad,ok,happy");
    EXPECT_EQ(event["payload"]["after"]["mood"].str(), "ok");
}

TEST(CoreDebezium, ADomainIsItsBaseType)
{
    ChangeBuilder b(WS_OP_INSERT);
    b.after(
        {{"id", INT4OID, v_int(1), true, -1, true},
         {"n", 16390, v_int(42), false, -1, false, 0, "posint", nullptr, {}, nullptr, 0, INT4OID}});
    TestEncoder enc(kJson);
    Json event = parse_json(enc.event(b.get()));
    EXPECT_EQ(event["schema"].field_schema("after")["fields"][1]["type"].str(), "int32");
    EXPECT_EQ(event["payload"]["after"]["n"].num(), "42");
}

TEST(CoreDebezium, MoneyIsADecimalOfTwoDigitsInEachMode)
{
    const std::string amount = "-1234.56";
    ChangeBuilder b(WS_OP_INSERT);
    b.after({{"id", INT4OID, v_int(1), true, -1, true}, {"m", 790, v_numeric(amount)}});
    TestEncoder text(kJson);
    EXPECT_EQ(parse_json(text.event(b.get()))["payload"]["after"]["m"].str(), "-1234.56");
    TestEncoder dbl(json_with({{"decimal-handling", "double"}}));
    EXPECT_EQ(parse_json(dbl.event(b.get()))["payload"]["after"]["m"].num(), "-1234.56");
    TestEncoder precise(json_with({{"decimal-handling", "precise"}}));
    Json event = parse_json(precise.event(b.get()));
    const Json &field = event["schema"].field_schema("after")["fields"][1];
    EXPECT_EQ(field["name"].str(), "org.apache.kafka.connect.data.Decimal");
    EXPECT_EQ(field["parameters"]["scale"].str(), "2");
    EXPECT_FALSE(field["parameters"].has("connect.decimal.precision"));
    /* -123456 as big-endian two's complement: fe 1d c0 */
    EXPECT_EQ(event["payload"]["after"]["m"].str(), "/h3A");
}

TEST(CoreDebezium, BitsAreBooleansOrDebeziumBits)
{
    const std::string one = "1", bits = "101", zeros = "000", wide = "1000000001";
    ChangeBuilder b(WS_OP_INSERT);
    b.after({{"id", INT4OID, v_int(1), true, -1, true},
             {"flag", 1560, v_other(one), false, 1},
             {"b3", 1560, v_other(bits), false, 3},
             {"z", 1560, v_other(zeros), false, 3},
             {"v", 1562, v_other(wide), false, 16}});
    TestEncoder enc(kJson);
    Json event = parse_json(enc.event(b.get()));
    const Json &fields = event["schema"].field_schema("after")["fields"];
    EXPECT_EQ(fields[1]["type"].str(), "boolean");
    EXPECT_EQ(fields[2]["name"].str(), "io.debezium.data.Bits");
    EXPECT_EQ(fields[2]["parameters"]["length"].str(), "3");
    EXPECT_EQ(fields[4]["parameters"]["length"].str(), "16");
    const Json &after = event["payload"]["after"];
    EXPECT_TRUE(after["flag"].boolean);
    EXPECT_EQ(after["b3"].str(), "BQ=="); /* 0x05 */
    EXPECT_EQ(after["z"].str(), "");      /* no bit set: no bytes */
    EXPECT_EQ(after["v"].str(), "AQI=");  /* 513 little-endian: 01 02 */
}

TEST(CoreDebezium, DefaultsAreInTheSchemaAndReplaceNulls)
{
    const std::string abc = "abc";
    ChangeBuilder b(WS_OP_INSERT);
    b.after(
        {{"id", INT4OID, v_int(1), true, -1, true, 0, "integer", "nextval('t_id_seq'::regclass)"},
         {"name", TEXTOID, v_null(), false, -1, false, 0, "text", "'abc'::text", v_text(abc)},
         {"qty", INT4OID, v_int(3), false, -1, true, 0, "integer", "7", v_int(7)},
         {"at", TIMESTAMPTZOID, v_null(), false, -1, false, 0, "timestamptz", "now()"},
         {"sum", INT4OID, v_null(), false, -1, false, 0, "integer", "(1 + 2)", v_int(3)},
         {"note", TEXTOID, v_null(), false, -1, false, 0, "text", "NULL::text"}});
    TestEncoder enc(kJson);
    Json event = parse_json(enc.event(b.get()));
    const Json &fields = event["schema"].field_schema("after")["fields"];
    EXPECT_EQ(fields[0]["default"].num(), "0"); /* a sequence: Debezium's placeholder */
    EXPECT_EQ(fields[1]["default"].str(), "abc");
    EXPECT_EQ(fields[2]["default"].num(), "7");
    EXPECT_EQ(fields[3]["default"].str(), "1970-01-01T00:00:00.000000Z");
    EXPECT_FALSE(fields[4].has("default")); /* an expression Debezium does not read */
    EXPECT_FALSE(fields[5].has("default"));
    /* the key schema has the default too */
    Json key = parse_json(enc.key(b.get()));
    EXPECT_EQ(key["schema"]["fields"][0]["default"].num(), "0");
    /* JsonConverter's replace.null.with.default: a NULL is written as the default */
    const Json &after = event["payload"]["after"];
    EXPECT_EQ(after["name"].str(), "abc");
    EXPECT_EQ(after["qty"].num(), "3");
    EXPECT_EQ(after["at"].str(), "1970-01-01T00:00:00.000000Z");
    EXPECT_TRUE(after["sum"].is_null());
    EXPECT_TRUE(after["note"].is_null());

    /* replace-null-with-default=off keeps the NULLs */
    TestEncoder nulls(json_with({{"replace-null-with-default", "off"}}));
    Json kept = parse_json(nulls.event(b.get()));
    EXPECT_TRUE(kept["payload"]["after"]["name"].is_null());
    EXPECT_EQ(kept["schema"].field_schema("after")["fields"][1]["default"].str(), "abc");
}

TEST(CoreDebezium, ADeleteFillsMissingNotNullColumnsWithTheirDefault)
{
    ChangeBuilder b(WS_OP_DELETE);
    b.after({{"id", INT4OID, v_int(1), true, -1, true},
             {"qty", INT4OID, v_int(0), false, -1, true, 0, "integer", "5", v_int(5)},
             {"n", INT4OID, v_int(0), false, -1, true}});
    b.before({{"id", INT4OID, v_int(1), true, -1, true}});
    TestEncoder enc(json_with({{"json-schema", "false"}, {"replace-null-with-default", "off"}}));
    Json before = parse_json(enc.event(b.get()))["before"];
    EXPECT_EQ(before["qty"].num(), "5"); /* NOT NULL, logged not: its default */
    EXPECT_EQ(before["n"].num(), "0");   /* NOT NULL without default: the zero value */
}

TEST(CoreDebezium, PointsAreDebeziumGeometryAndTsvectorsNamed)
{
    const std::string point = "(1.5,-2)", doc = "'a' 'cat'";
    ChangeBuilder b(WS_OP_INSERT);
    b.after({{"id", INT4OID, v_int(1), true, -1, true},
             {"p", 600, v_other(point)},
             {"v", 3614, v_other(doc)}});
    TestEncoder enc(kJson);
    Json event = parse_json(enc.event(b.get()));
    const Json &fields = event["schema"].field_schema("after")["fields"];
    EXPECT_EQ(fields[1]["name"].str(), "io.debezium.data.geometry.Point");
    EXPECT_EQ(fields[1]["doc"].str(), "Geometry (POINT)");
    EXPECT_EQ(fields[2]["name"].str(), "io.debezium.data.Tsvector");
    const Json &p = event["payload"]["after"]["p"];
    EXPECT_EQ(p["x"].num(), "1.5");
    EXPECT_EQ(p["y"].num(), "-2.0");
    EXPECT_EQ(p["wkb"].str(), "AQEAAAAAAAAAAAD4PwAAAAAAAADA"); /* 01, type 1, x, y little-endian */
    EXPECT_TRUE(p["srid"].is_null());
    EXPECT_EQ(event["payload"]["after"]["v"].str(), "'a' 'cat'");
}

TEST(CoreDebezium, ANumberCoercedToTheColumnsTypeIsReadFromItsText)
{
    /* numeric(10,2) DEFAULT 1.5, double precision DEFAULT 2.5, bigint DEFAULT (-7): the
     * server keeps a cast around the literal; the shim never evaluates it */
    auto defaults = [](std::vector<std::pair<const char *, const char *>> options) {
        ChangeBuilder b(WS_OP_INSERT);
        b.after(
            {{"id", INT4OID, v_int(1), true, -1, true},
             {"n", NUMERICOID, v_null(), false, numeric_typmod(10, 2), false, 0, "numeric", "1.5"},
             {"d", FLOAT8OID, v_null(), false, -1, false, 0, "double precision", "2.5"},
             {"b", INT8OID, v_null(), false, -1, false, 0, "bigint", "(-7)"},
             {"over", NUMERICOID, v_null(), false, numeric_typmod(5, 2), false, 0, "numeric",
              "1.234"}});
        TestEncoder enc(json_with(options));
        return parse_json(enc.event(b.get()))["schema"].field_schema("after")["fields"];
    };
    Json fields = defaults({});
    EXPECT_EQ(fields[1]["default"].str(), "1.50");
    EXPECT_EQ(fields[2]["default"].num(), "2.5");
    EXPECT_EQ(fields[3]["default"].num(), "-7");
    EXPECT_FALSE(fields[4].has("default")); /* more digits than the scale: no guess */
    Json precise = defaults({{"decimal-handling", "precise"}});
    EXPECT_EQ(precise[1]["default"].str(), "AJY="); /* unscaled 150 */
    Json dbl = defaults({{"decimal-handling", "double"}});
    EXPECT_EQ(dbl[1]["default"].num(), "1.5");
}
