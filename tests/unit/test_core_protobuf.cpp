/*
 * test_core_protobuf.cpp: format=protobuf events and keys, read back with the
 * generated walship.v1 classes the way a consumer would, plus varint framing,
 * decode_event's JSON rendering and its handling of bytes that are not an event.
 */
#include "core_test_support.hpp"

#include "walship/v1/change_event.pb.h"

#include <cmath>

using namespace walship_test;
namespace v1 = walship::v1;

namespace
{

v1::ChangeEvent parse_event(const std::string &bytes)
{
    v1::ChangeEvent event;
    EXPECT_TRUE(event.ParseFromString(bytes)) << "not a ChangeEvent";
    return event;
}

const v1::Column &column(const v1::Row &row, const std::string &name)
{
    for (const v1::Column &c : row.columns())
        if (c.name() == name)
            return c;
    throw std::runtime_error("no column " + name);
}

/* Reads one base-128 varint length prefix at pos, advancing pos. */
uint64_t read_varint(const std::string &bytes, size_t &pos)
{
    uint64_t v = 0;
    for (int shift = 0; pos < bytes.size(); shift += 7) {
        auto b = static_cast<unsigned char>(bytes[pos++]);
        v |= uint64_t{b & 0x7Fu} << shift;
        if ((b & 0x80) == 0)
            return v;
    }
    throw std::runtime_error("truncated varint");
}

std::string to_json(const std::string &bytes, std::string *error = nullptr)
{
    char *json = nullptr;
    ws_error err{};
    ws_status status = ws_event_to_json(reinterpret_cast<const uint8_t *>(bytes.data()),
                                        bytes.size(), &json, &err);
    if (status != WS_OK) {
        if (error != nullptr)
            *error = err.message;
        return "";
    }
    std::string out(json);
    ws_free(json);
    return out;
}

const unsigned char kUuid[16] = {0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8,
                                 0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38, 0x0a, 0x11};

} // namespace

TEST(CoreProtobuf, EveryValueKindRoundTrips)
{
    const std::string text = "h\xC3\xA9llo";
    const std::string bytes("\x00\x01\xff", 3);
    const std::string numeric = "-12345.678900";
    const std::string json_text = "{\"a\": [1, 2]}";
    const std::string time_text = "13:51:30.123";
    const std::string timetz_text = "13:51:30+02";
    const std::string interval_text = "1 year 2 mons 3 days 04:05:06.78";
    const std::string inet = "192.168.0.1/24";
    ChangeBuilder b(WS_OP_INSERT);
    b.after({{"null_col", TEXTOID, v_null()},
             {"toast_col", TEXTOID, v_toast()},
             {"int_col", INT8OID, v_int(-9223372036854775807LL - 1), true},
             {"float_col", FLOAT8OID, v_double(NAN)},
             {"bool_col", BOOLOID, v_bool(true)},
             {"text_col", TEXTOID, v_text(text)},
             {"bytes_col", BYTEAOID, v_bytes(bytes)},
             {"ts_col", TIMESTAMPTZOID, v_timestamp(WS_TIMESTAMP_POS_INFINITY)},
             {"date_col", DATEOID, v_date(-2440588)},
             {"uuid_col", UUIDOID, v_uuid(kUuid)},
             {"numeric_col", NUMERICOID, v_numeric(numeric)},
             {"json_col", JSONBOID, v_json(json_text)},
             {"time_col", TIMEOID, v_time(49890123000, time_text)},
             {"timetz_col", TIMETZOID, v_timetz(49890000000, -7200, timetz_text)},
             {"interval_col", INTERVALOID, v_interval(14, 3, 14706780000, interval_text)},
             {"inet_col", 869, v_other(inet)}});
    TestEncoder enc;
    v1::ChangeEvent event = parse_event(enc.event(b.get()));
    ASSERT_TRUE(event.has_after());
    const v1::Row &row = event.after();
    ASSERT_EQ(row.columns_size(), 16);
    EXPECT_TRUE(column(row, "null_col").value().is_null());
    EXPECT_EQ(column(row, "null_col").value().kind_case(), v1::Value::kIsNull);
    EXPECT_TRUE(column(row, "toast_col").value().unchanged_toast());
    EXPECT_EQ(column(row, "int_col").value().int64_value(), INT64_MIN);
    EXPECT_TRUE(std::isnan(column(row, "float_col").value().double_value()));
    EXPECT_EQ(column(row, "bool_col").value().kind_case(), v1::Value::kBoolValue);
    EXPECT_TRUE(column(row, "bool_col").value().bool_value());
    EXPECT_EQ(column(row, "text_col").value().string_value(), text);
    EXPECT_EQ(column(row, "bytes_col").value().bytes_value(), bytes);
    EXPECT_EQ(column(row, "ts_col").value().timestamp_us(), INT64_MAX);
    EXPECT_EQ(column(row, "date_col").value().date_days(), -2440588);
    EXPECT_EQ(column(row, "uuid_col").value().uuid(),
              std::string(reinterpret_cast<const char *>(kUuid), 16));
    EXPECT_EQ(column(row, "numeric_col").value().numeric(), numeric);
    EXPECT_EQ(column(row, "json_col").value().json(), json_text);
    EXPECT_EQ(column(row, "time_col").value().string_value(), time_text);
    EXPECT_EQ(column(row, "timetz_col").value().string_value(), timetz_text);
    EXPECT_EQ(column(row, "interval_col").value().string_value(), interval_text);
    EXPECT_EQ(column(row, "inet_col").value().string_value(), inet);
    EXPECT_EQ(column(row, "inet_col").type_oid(), 869u);
}

TEST(CoreProtobuf, DoubleSpecialsAndEmptyValuesSurvive)
{
    const std::string empty;
    ChangeBuilder b(WS_OP_INSERT);
    b.after({{"inf", FLOAT8OID, v_double(HUGE_VAL)},
             {"ninf", FLOAT8OID, v_double(-HUGE_VAL)},
             {"zero", FLOAT8OID, v_double(0.0)},
             {"false", BOOLOID, v_bool(false)},
             {"empty_text", TEXTOID, v_text(empty)},
             {"empty_bytes", BYTEAOID, v_bytes(empty)},
             {"neg_inf_date", DATEOID, v_date(WS_DATE_NEG_INFINITY)},
             {"neg_inf_ts", TIMESTAMPOID, v_timestamp(WS_TIMESTAMP_NEG_INFINITY)}});
    TestEncoder enc;
    v1::ChangeEvent event = parse_event(enc.event(b.get()));
    const v1::Row &row = event.after();
    EXPECT_EQ(column(row, "inf").value().double_value(), HUGE_VAL);
    EXPECT_EQ(column(row, "ninf").value().double_value(), -HUGE_VAL);
    /* proto3 oneofs keep presence even for zero values: a consumer can tell 0 from unset */
    EXPECT_EQ(column(row, "zero").value().kind_case(), v1::Value::kDoubleValue);
    EXPECT_EQ(column(row, "false").value().kind_case(), v1::Value::kBoolValue);
    EXPECT_EQ(column(row, "empty_text").value().kind_case(), v1::Value::kStringValue);
    EXPECT_EQ(column(row, "empty_bytes").value().kind_case(), v1::Value::kBytesValue);
    EXPECT_EQ(column(row, "neg_inf_date").value().date_days(), INT32_MIN);
    EXPECT_EQ(column(row, "neg_inf_ts").value().timestamp_us(), INT64_MIN);
}

TEST(CoreProtobuf, SourceAndColumnMetadata)
{
    ChangeBuilder b(WS_OP_INSERT);
    b.after({{"id", INT4OID, v_int(1), true, -1, true, 0, "integer"}});
    b.change().source.origin = "eu_node";
    TestEncoder enc;
    v1::ChangeEvent event = parse_event(enc.event(b.get()));
    EXPECT_EQ(event.op(), v1::INSERT);
    const v1::Source &source = event.source();
    EXPECT_EQ(source.database(), "shop");
    EXPECT_EQ(source.schema(), "public");
    EXPECT_EQ(source.table(), "orders");
    EXPECT_EQ(source.xid(), 571u);
    EXPECT_EQ(source.commit_lsn(), 53195832u);
    EXPECT_EQ(source.change_lsn(), 53195829u);
    EXPECT_EQ(source.commit_time_us(), 1700000000123456);
    EXPECT_EQ(source.origin(), "eu_node");
    EXPECT_EQ(source.truncated_tables_size(), 0);
    EXPECT_EQ(event.after().columns(0).type_name(), "integer");
    EXPECT_EQ(event.after().columns(0).type_oid(), INT4OID);
    EXPECT_FALSE(event.has_before());
    EXPECT_FALSE(event.has_message());
    EXPECT_EQ(event.event_count(), 0u);
}

TEST(CoreProtobuf, KeyColumnsComeFromTheNewRowOrTheOldRowOnDelete)
{
    const std::string name = "Anne";
    ChangeBuilder insert(WS_OP_INSERT);
    insert.after({{"tenant", INT4OID, v_int(7), true},
                  {"name", TEXTOID, v_text(name)},
                  {"id", INT8OID, v_int(42), true}});
    TestEncoder enc;
    v1::ChangeEvent event = parse_event(enc.event(insert.get()));
    ASSERT_EQ(event.key_size(), 2);
    EXPECT_EQ(event.key(0).name(), "tenant");
    EXPECT_EQ(event.key(1).name(), "id");
    EXPECT_EQ(event.key(1).value().int64_value(), 42);

    v1::Row key;
    ASSERT_TRUE(key.ParseFromString(enc.key(insert.get())));
    ASSERT_EQ(key.columns_size(), 2);
    EXPECT_EQ(key.columns(0).value().int64_value(), 7);
    EXPECT_EQ(key.columns(1).value().int64_value(), 42);

    ChangeBuilder del(WS_OP_DELETE);
    del.before({{"tenant", INT4OID, v_int(7), true}, {"id", INT8OID, v_int(43), true}});
    event = parse_event(enc.event(del.get()));
    EXPECT_EQ(event.op(), v1::DELETE);
    ASSERT_EQ(event.key_size(), 2);
    EXPECT_EQ(event.key(1).value().int64_value(), 43);
    EXPECT_TRUE(event.has_before());
    EXPECT_FALSE(event.has_after());
    ASSERT_TRUE(key.ParseFromString(enc.key(del.get())));
    EXPECT_EQ(key.columns(1).value().int64_value(), 43);

    ChangeBuilder keyless(WS_OP_INSERT);
    keyless.after({{"name", TEXTOID, v_text(name)}});
    EXPECT_EQ(enc.key(keyless.get()), "");
    event = parse_event(enc.event(keyless.get()));
    EXPECT_EQ(event.key_size(), 0);
}

TEST(CoreProtobuf, UpdateCarriesBeforeUnlessIncludeBeforeIsOff)
{
    const std::string old_name = "Anne", new_name = "Anne Marie";
    ChangeBuilder b(WS_OP_UPDATE);
    b.before({{"id", INT4OID, v_int(1), true}, {"name", TEXTOID, v_text(old_name)}});
    b.after({{"id", INT4OID, v_int(1), true}, {"name", TEXTOID, v_text(new_name)}});

    TestEncoder with;
    v1::ChangeEvent event = parse_event(with.event(b.get()));
    EXPECT_EQ(event.op(), v1::UPDATE);
    ASSERT_TRUE(event.has_before());
    EXPECT_EQ(column(event.before(), "name").value().string_value(), old_name);
    EXPECT_EQ(column(event.after(), "name").value().string_value(), new_name);

    TestEncoder without({{"include-before", "off"}});
    event = parse_event(without.event(b.get()));
    EXPECT_FALSE(event.has_before());
    EXPECT_TRUE(event.has_after());
    EXPECT_EQ(event.key_size(), 1);
}

TEST(CoreProtobuf, TruncateListsEveryTable)
{
    const char *tables[] = {"public.orders", "public.order_lines"};
    ChangeBuilder b(WS_OP_TRUNCATE);
    b.change().truncated_tables = tables;
    b.change().ntruncated = 2;
    TestEncoder enc;
    v1::ChangeEvent event = parse_event(enc.event(b.get()));
    EXPECT_EQ(event.op(), v1::TRUNCATE);
    ASSERT_EQ(event.source().truncated_tables_size(), 2);
    EXPECT_EQ(event.source().truncated_tables(0), "public.orders");
    EXPECT_EQ(event.source().truncated_tables(1), "public.order_lines");
    EXPECT_FALSE(event.has_before());
    EXPECT_FALSE(event.has_after());
    EXPECT_EQ(enc.key(b.get()), "");
}

TEST(CoreProtobuf, MessageEventsAndTheirPrefixKey)
{
    const std::string content("binary\0payload", 14);
    ChangeBuilder b(WS_OP_MESSAGE);
    b.table(nullptr, nullptr);
    b.change().message_prefix = "audit";
    b.change().message_content = content.data();
    b.change().message_len = content.size();
    b.change().message_transactional = true;
    TestEncoder enc;
    v1::ChangeEvent event = parse_event(enc.event(b.get()));
    EXPECT_EQ(event.op(), v1::MESSAGE);
    ASSERT_TRUE(event.has_message());
    EXPECT_EQ(event.message().prefix(), "audit");
    EXPECT_EQ(event.message().content(), content);
    EXPECT_TRUE(event.message().transactional());
    EXPECT_EQ(event.source().schema(), "");
    EXPECT_EQ(event.source().table(), "");

    v1::Row key;
    ASSERT_TRUE(key.ParseFromString(enc.key(b.get())));
    ASSERT_EQ(key.columns_size(), 1);
    EXPECT_EQ(key.columns(0).name(), "prefix");
    EXPECT_EQ(key.columns(0).value().string_value(), "audit");
}

TEST(CoreProtobuf, TransactionBoundaries)
{
    TestEncoder enc;
    ChangeBuilder begin(WS_OP_BEGIN);
    begin.table(nullptr, nullptr);
    v1::ChangeEvent event = parse_event(enc.event(begin.get()));
    EXPECT_EQ(event.op(), v1::BEGIN);
    EXPECT_EQ(event.event_count(), 0u);

    ChangeBuilder commit(WS_OP_COMMIT);
    commit.table(nullptr, nullptr);
    commit.change().event_count = 3;
    event = parse_event(enc.event(commit.get()));
    EXPECT_EQ(event.op(), v1::COMMIT);
    EXPECT_EQ(event.event_count(), 3u);
    EXPECT_EQ(event.source().commit_lsn(), 53195832u);

    v1::Row key;
    ASSERT_TRUE(key.ParseFromString(enc.key(commit.get())));
    EXPECT_EQ(key.columns(0).name(), "id");
    EXPECT_EQ(key.columns(0).value().string_value(), "571:53195832");
}

TEST(CoreProtobuf, ReusedEncoderLeavesNothingBehind)
{
    /* one encoder, events of different shapes in a row: no field leaks into the next */
    const std::string a = "a", long_text(1000, 'x');
    const char *tables[] = {"public.orders"};
    TestEncoder enc;

    ChangeBuilder update(WS_OP_UPDATE);
    update.before({{"id", INT4OID, v_int(1), true}, {"body", TEXTOID, v_text(long_text)}});
    update.after({{"id", INT4OID, v_int(1), true},
                  {"body", TEXTOID, v_text(long_text)},
                  {"extra", TEXTOID, v_text(a)}});
    update.change().source.origin = "node_b";
    ChangeBuilder message(WS_OP_MESSAGE);
    message.table(nullptr, nullptr);
    message.change().message_prefix = "p";
    ChangeBuilder truncate(WS_OP_TRUNCATE);
    truncate.change().truncated_tables = tables;
    truncate.change().ntruncated = 1;
    ChangeBuilder commit(WS_OP_COMMIT);
    commit.change().event_count = 9;
    ChangeBuilder insert(WS_OP_INSERT);
    insert.after({{"body", INT8OID, v_int(5)}});

    for (int round = 0; round < 3; round++) {
        v1::ChangeEvent event = parse_event(enc.event(update.get()));
        EXPECT_EQ(event.before().columns_size(), 2);
        EXPECT_EQ(event.after().columns_size(), 3);
        EXPECT_EQ(event.key_size(), 1);
        EXPECT_EQ(event.source().origin(), "node_b");

        event = parse_event(enc.event(message.get()));
        EXPECT_FALSE(event.has_before());
        EXPECT_FALSE(event.has_after());
        EXPECT_EQ(event.key_size(), 0);
        EXPECT_TRUE(event.has_message());
        EXPECT_EQ(event.source().origin(), "");

        event = parse_event(enc.event(truncate.get()));
        EXPECT_FALSE(event.has_message());
        EXPECT_EQ(event.source().truncated_tables_size(), 1);

        event = parse_event(enc.event(commit.get()));
        EXPECT_EQ(event.event_count(), 9u);
        EXPECT_EQ(event.source().truncated_tables_size(), 0);

        event = parse_event(enc.event(insert.get()));
        EXPECT_EQ(event.event_count(), 0u);
        EXPECT_FALSE(event.has_before());
        ASSERT_EQ(event.after().columns_size(), 1);
        EXPECT_EQ(event.after().columns(0).value().kind_case(), v1::Value::kInt64Value);
        EXPECT_EQ(event.after().columns(0).value().int64_value(), 5);
    }
}

TEST(CoreProtobuf, VarintFramingSplitsAStreamOfEvents)
{
    const std::string big(300, 'z'); /* a body over 127 bytes needs a 2-byte prefix */
    TestEncoder enc({{"framing", "varint"}});
    std::string stream;
    for (int i = 0; i < 3; i++) {
        ChangeBuilder b(WS_OP_INSERT);
        b.after({{"id", INT4OID, v_int(i), true}, {"body", TEXTOID, v_text(big)}});
        stream += enc.event(b.get());
    }
    size_t pos = 0;
    for (int i = 0; i < 3; i++) {
        uint64_t len = read_varint(stream, pos);
        ASSERT_LE(pos + len, stream.size());
        v1::ChangeEvent event = parse_event(stream.substr(pos, len));
        EXPECT_EQ(event.after().columns(0).value().int64_value(), i);
        pos += len;
    }
    EXPECT_EQ(pos, stream.size());
    /* keys are never framed */
    ChangeBuilder b(WS_OP_INSERT);
    b.after({{"id", INT4OID, v_int(1), true}});
    v1::Row key;
    EXPECT_TRUE(key.ParseFromString(enc.key(b.get())));
}

TEST(CoreProtobuf, HundredMegabyteValueEncodes)
{
    const std::string huge(100u * 1024 * 1024, 'v');
    ChangeBuilder b(WS_OP_INSERT);
    b.after({{"id", INT4OID, v_int(1), true}, {"doc", TEXTOID, v_text(huge)}});
    TestEncoder enc;
    std::string bytes = enc.event(b.get());
    ASSERT_GT(bytes.size(), huge.size());
    v1::ChangeEvent event = parse_event(bytes);
    EXPECT_EQ(column(event.after(), "doc").value().string_value().size(), huge.size());

    /* the encoder lets go of the huge row and goes on as before */
    const std::string small = "small";
    ChangeBuilder next(WS_OP_UPDATE);
    next.before({{"id", INT4OID, v_int(1), true}});
    next.after({{"id", INT4OID, v_int(1), true}, {"doc", TEXTOID, v_text(small)}});
    event = parse_event(enc.event(next.get()));
    EXPECT_EQ(column(event.after(), "doc").value().string_value(), "small");
    EXPECT_EQ(event.before().columns_size(), 1);
    EXPECT_EQ(event.key_size(), 1);
}

TEST(CoreProtobuf, InvalidChangesAreRejectedWithAMessage)
{
    TestEncoder enc;
    ChangeBuilder insert(WS_OP_INSERT);
    EXPECT_EQ(enc.event_error(insert.get()),
              "invalid change: an INSERT, UPDATE or READ change needs the new row");
    ChangeBuilder unknown(static_cast<ws_op>(42));
    EXPECT_EQ(enc.event_error(unknown.get()), "invalid change: unknown operation 42");
    ChangeBuilder nameless(WS_OP_INSERT);
    nameless.after({{nullptr, INT4OID, v_int(1)}});
    EXPECT_EQ(enc.event_error(nameless.get()),
              "invalid change: column 1 of the new row has no name");
    ws_error err{};
    ws_encoded out{};
    EXPECT_EQ(ws_encode(nullptr, insert.get(), true, &out, &err), WS_ERROR);
    EXPECT_EQ(ws_encode(enc.get(), nullptr, true, &out, &err), WS_ERROR);
}

TEST(CoreDecodeEvent, RendersAnEventAsJson)
{
    const std::string name = "Anne";
    ChangeBuilder b(WS_OP_INSERT);
    b.after({{"id", INT8OID, v_int(1), true}, {"name", TEXTOID, v_text(name)}});
    TestEncoder enc;
    std::string json = to_json(enc.event(b.get()));
    Json event = parse_json(json);
    EXPECT_EQ(event["op"].str(), "INSERT");
    EXPECT_EQ(event["source"]["database"].str(), "shop");
    /* protobuf's JSON mapping: 64-bit integers as strings, field names as in the .proto */
    EXPECT_EQ(event["source"]["commit_lsn"].str(), "53195832");
    EXPECT_EQ(event["after"]["columns"][1]["value"]["string_value"].str(), "Anne");
    EXPECT_EQ(event["after"]["columns"][0]["value"]["int64_value"].str(), "1");
    EXPECT_EQ(event["key"][0]["name"].str(), "id");
    EXPECT_FALSE(event.has("before"));
    EXPECT_FALSE(event.has("event_count")); /* defaults are left out */
}

TEST(CoreDecodeEvent, RejectsBytesThatAreNotAnEvent)
{
    std::string error;
    EXPECT_EQ(to_json(std::string("\xff\xff\xff\xff", 4), &error), "");
    EXPECT_EQ(error, "invalid walship event: the bytes are not a protobuf walship.v1.ChangeEvent");

    /* parses as protobuf (an unknown varint field) but is no event */
    EXPECT_EQ(to_json(std::string("\x78\x01", 2), &error), "");
    EXPECT_EQ(error.rfind("invalid walship event: no operation (op) set", 0), 0u) << error;

    EXPECT_EQ(to_json("", &error), "");
    EXPECT_EQ(error.rfind("invalid walship event: no operation (op) set", 0), 0u) << error;

    v1::ChangeEvent odd;
    odd.set_op(static_cast<v1::Operation>(99));
    EXPECT_EQ(to_json(odd.SerializeAsString(), &error), "");
    EXPECT_EQ(error, "invalid walship event: unknown operation 99");

    ws_error err{};
    EXPECT_EQ(ws_event_to_json(nullptr, 5, nullptr, &err), WS_ERROR);
}
