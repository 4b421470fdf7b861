/*
 * test_core_protobuf_wire.cpp: the hand-written protobuf encoder writes exactly what
 * the generated walship.v1 classes would.
 *
 * The reference below fills a walship.v1.ChangeEvent (and, for keys, a Row) from a
 * ws_change with the generated setters, the way the encoder did before it wrote the
 * wire format itself, and serializes it. Every test compares the encoder's bytes
 * with the reference's byte for byte, and parses them back with the generated
 * classes, for every value kind, the special and empty values, every event shape
 * and the per-table cache's invalidation.
 */
#include "core_test_support.hpp"

#include "walship/v1/change_event.pb.h"

#include <cmath>
#include <limits>
#include <random>

using namespace walship_test;
namespace v1 = walship::v1;

namespace
{

/* The encoder's event of each change, compared with the generated serializer's: an UPDATE
 * of the key stays one event (the records it becomes are test_core_records.cpp's). */
const Settings kOneEvent{{"key-change", "update"}};

/* ---------------------------------------------------------------- the reference */

const char *or_empty(const char *s)
{
    return s != nullptr ? s : "";
}

std::string value_text(const ws_value &value)
{
    return value.data != nullptr ? std::string(value.data, value.len) : std::string();
}

void ref_value(v1::Value *out, const ws_value &value)
{
    switch (value.kind) {
    case WS_VALUE_NULL:
        out->set_is_null(true);
        break;
    case WS_VALUE_UNCHANGED_TOAST:
        out->set_unchanged_toast(true);
        break;
    case WS_VALUE_INT64:
        out->set_int64_value(value.v.i64);
        break;
    case WS_VALUE_DOUBLE:
        out->set_double_value(value.v.f64);
        break;
    case WS_VALUE_BOOL:
        out->set_bool_value(value.v.b);
        break;
    case WS_VALUE_BYTES:
        out->set_bytes_value(value_text(value));
        break;
    case WS_VALUE_TIMESTAMP:
        out->set_timestamp_us(value.v.i64);
        break;
    case WS_VALUE_TIMESTAMPTZ:
        out->set_timestamptz_us(value.v.i64);
        break;
    case WS_VALUE_ARRAY: {
        const ws_array &in = *value.v.array;
        v1::ArrayValue *array = out->mutable_array();
        for (int e = 0; e < in.nelements; e++)
            ref_value(array->add_elements(), in.elements[e]);
        bool default_bounds = true;
        for (int d = 0; d < in.ndims; d++) {
            array->add_dims(in.dims[d]);
            default_bounds = default_bounds && in.lower_bounds[d] == 1;
        }
        for (int d = 0; !default_bounds && d < in.ndims; d++)
            array->add_lower_bounds(in.lower_bounds[d]);
        break;
    }
    case WS_VALUE_DATE:
        out->set_date_days(value.v.i32);
        break;
    case WS_VALUE_UUID:
        out->set_uuid(std::string(reinterpret_cast<const char *>(value.v.uuid), 16));
        break;
    case WS_VALUE_NUMERIC:
        out->set_numeric(value_text(value));
        break;
    case WS_VALUE_JSON:
        out->set_json(value_text(value));
        break;
    case WS_VALUE_TEXT:
    case WS_VALUE_TIME:
    case WS_VALUE_TIMETZ:
    case WS_VALUE_INTERVAL:
    case WS_VALUE_OTHER:
        out->set_string_value(value_text(value));
        break;
    }
}

void ref_columns(google::protobuf::RepeatedPtrField<v1::Column> *out, const ws_row *row,
                 bool keys_only)
{
    for (int i = 0; row != nullptr && i < row->ncolumns; i++) {
        const ws_column &c = row->columns[i];
        if (keys_only && !c.is_key)
            continue;
        v1::Column *col = out->Add();
        col->set_name(c.name);
        col->set_type_oid(c.type_oid);
        col->set_type_name(or_empty(c.type_name));
        ref_value(col->mutable_value(), c.value);
    }
}

const ws_row *ref_key_row(const ws_change &change)
{
    switch (change.op) {
    case WS_OP_INSERT:
    case WS_OP_UPDATE:
    case WS_OP_READ:
        return change.after;
    case WS_OP_DELETE:
        return change.before;
    default:
        return nullptr;
    }
}

v1::ChangeEvent ref_event_message(const ws_change &change, bool include_before)
{
    v1::ChangeEvent event;
    event.set_op(static_cast<v1::Operation>(change.op));
    v1::Source *source = event.mutable_source();
    const ws_source &in = change.source;
    source->set_database(or_empty(in.database));
    source->set_schema(or_empty(in.schema));
    source->set_table(or_empty(in.table));
    source->set_xid(in.xid);
    source->set_commit_lsn(in.commit_lsn);
    source->set_change_lsn(in.change_lsn);
    source->set_commit_time_us(in.commit_time_us);
    source->set_origin(or_empty(in.origin));
    if (change.op == WS_OP_TRUNCATE)
        for (int i = 0; i < change.ntruncated; i++)
            source->add_truncated_tables(change.truncated_tables[i]);
    ref_columns(event.mutable_key(), ref_key_row(change), true);
    if (include_before && change.before != nullptr)
        ref_columns(event.mutable_before()->mutable_columns(), change.before, false);
    if (change.after != nullptr && change.op != WS_OP_DELETE)
        ref_columns(event.mutable_after()->mutable_columns(), change.after, false);
    if (change.op == WS_OP_MESSAGE) {
        v1::Message *message = event.mutable_message();
        message->set_prefix(or_empty(change.message_prefix));
        message->set_content(std::string(
            change.message_content != nullptr ? change.message_content : "", change.message_len));
        message->set_transactional(change.message_transactional);
    }
    if (change.op == WS_OP_COMMIT)
        event.set_event_count(change.event_count);
    return event;
}

std::string ref_event(const ws_change &change, bool include_before = true)
{
    return ref_event_message(change, include_before).SerializeAsString();
}

std::string ref_key(const ws_change &change)
{
    v1::Row key;
    auto text_key = [&](const char *name, const std::string &text) {
        v1::Column *col = key.add_columns();
        col->set_name(name);
        col->set_type_oid(25);
        col->set_type_name("text");
        col->mutable_value()->set_string_value(text);
    };
    if (change.op == WS_OP_MESSAGE)
        text_key("prefix", or_empty(change.message_prefix));
    else if (change.op == WS_OP_BEGIN || change.op == WS_OP_COMMIT)
        text_key("id", std::to_string(change.source.xid) + ":" +
                           std::to_string(change.source.commit_lsn));
    else
        ref_columns(key.mutable_columns(), ref_key_row(change), true);
    return key.columns_size() == 0 ? std::string() : key.SerializeAsString();
}

/* ---------------------------------------------------------------- checks */

/* The event and its key are the reference's bytes, and parse back to the reference. */
void expect_same_as_reference(TestEncoder &enc, const ws_change &change, bool include_before = true)
{
    std::string bytes = enc.event(&change);
    std::string want = ref_event(change, include_before);
    EXPECT_EQ(bytes.size(), want.size());
    EXPECT_TRUE(bytes == want) << "event bytes differ from the generated serializer's";
    v1::ChangeEvent parsed;
    ASSERT_TRUE(parsed.ParseFromString(bytes));
    EXPECT_EQ(parsed.SerializeAsString(), want);

    std::string key = enc.key(&change);
    std::string want_key = ref_key(change);
    EXPECT_TRUE(key == want_key) << "key bytes differ from the generated serializer's";
    if (!key.empty()) {
        v1::Row row;
        ASSERT_TRUE(row.ParseFromString(key));
    }
}

const unsigned char kUuid[16] = {0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8,
                                 0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38, 0x0a, 0x11};
const unsigned char kZeroUuid[16] = {};

} // namespace

TEST(CoreProtobufWire, EveryValueKindMatchesTheGeneratedSerializer)
{
    const std::string text = "h\xC3\xA9llo", bytes("\x00\x01\xff", 3), numeric = "-12345.678900";
    const std::string json_text = "{\"a\": [1, 2]}", time_text = "13:51:30.123";
    const std::string timetz_text = "13:51:30+02", interval_text = "1 year 2 mons";
    const std::string inet = "192.168.0.1/24", nan = "NaN", inf = "Infinity", ninf = "-Infinity";
    ChangeBuilder b(WS_OP_INSERT);
    b.after({{"null_col", TEXTOID, v_null(), false, -1, false, 0, "text"},
             {"toast_col", TEXTOID, v_toast(), false, -1, false, 0, "text"},
             {"int_col", INT8OID, v_int(INT64_MIN), true, -1, true, 0, "bigint"},
             {"int_max", INT8OID, v_int(INT64_MAX)},
             {"int_neg", INT4OID, v_int(-1)},
             {"float_nan", FLOAT8OID, v_double(NAN)},
             {"float_inf", FLOAT8OID, v_double(HUGE_VAL)},
             {"float_ninf", FLOAT4OID, v_double(-HUGE_VAL)},
             {"float_tiny", FLOAT8OID, v_double(std::numeric_limits<double>::denorm_min())},
             {"bool_col", BOOLOID, v_bool(true)},
             {"text_col", VARCHAROID, v_text(text), false, 24, false, 0, "character varying(20)"},
             {"bytes_col", BYTEAOID, v_bytes(bytes)},
             {"ts_col", TIMESTAMPTZOID, v_timestamp(WS_TIMESTAMP_POS_INFINITY)},
             {"ts_ninf", TIMESTAMPOID, v_timestamp(WS_TIMESTAMP_NEG_INFINITY)},
             {"ts_before_1970", TIMESTAMPOID, v_timestamp(-1)},
             {"date_col", DATEOID, v_date(-2440588)},
             {"date_inf", DATEOID, v_date(WS_DATE_POS_INFINITY)},
             {"date_ninf", DATEOID, v_date(WS_DATE_NEG_INFINITY)},
             {"uuid_col", UUIDOID, v_uuid(kUuid)},
             {"numeric_col", NUMERICOID, v_numeric(numeric)},
             {"numeric_nan", NUMERICOID, v_numeric(nan)},
             {"numeric_inf", NUMERICOID, v_numeric(inf)},
             {"numeric_ninf", NUMERICOID, v_numeric(ninf)},
             {"json_col", JSONBOID, v_json(json_text)},
             {"time_col", TIMEOID, v_time(49890123000, time_text)},
             {"timetz_col", TIMETZOID, v_timetz(49890000000, -7200, timetz_text)},
             {"interval_col", INTERVALOID, v_interval(14, 3, 14706780000, interval_text)},
             {"inet_col", 869, v_other(inet), false, -1, false, 0, "inet"},
             {"big_oid", 4294967295u, v_other(inet), false, -1, false, 0, "my_type"}});
    TestEncoder enc(kOneEvent);
    expect_same_as_reference(enc, *b.get());

    v1::ChangeEvent event;
    ASSERT_TRUE(event.ParseFromString(enc.event(b.get())));
    const v1::Row &row = event.after();
    EXPECT_TRUE(std::isnan(row.columns(5).value().double_value()));
    EXPECT_EQ(row.columns(17).value().date_days(), INT32_MIN);
    EXPECT_EQ(row.columns(28).type_oid(), int64_t{4294967295});
    EXPECT_EQ(row.columns(28).type_name(), "my_type");
}

TEST(CoreProtobufWire, TimestamptzIsItsOwnMemberAndTimestampKeepsItsOwn)
{
    ChangeBuilder b(WS_OP_INSERT);
    b.after({{"id", INT4OID, v_int(1), true},
             {"tz", TIMESTAMPTZOID, v_timestamptz(1704164645123456)},
             {"tz_inf", TIMESTAMPTZOID, v_timestamptz(WS_TIMESTAMP_POS_INFINITY)},
             {"tz_ninf", TIMESTAMPTZOID, v_timestamptz(WS_TIMESTAMP_NEG_INFINITY)},
             {"tz_epoch", TIMESTAMPTZOID, v_timestamptz(0)},
             {"tz_bc", TIMESTAMPTZOID, v_timestamptz(-63745056000000000)},
             {"ts", TIMESTAMPOID, v_timestamp(1704164645123456)},
             {"ts_inf", TIMESTAMPOID, v_timestamp(WS_TIMESTAMP_POS_INFINITY)},
             {"ts_ninf", TIMESTAMPOID, v_timestamp(WS_TIMESTAMP_NEG_INFINITY)}});
    TestEncoder enc(kOneEvent);
    expect_same_as_reference(enc, *b.get());

    v1::ChangeEvent event;
    ASSERT_TRUE(event.ParseFromString(enc.event(b.get())));
    const auto &c = event.after().columns();
    EXPECT_EQ(c[1].value().kind_case(), v1::Value::kTimestamptzUs);
    EXPECT_EQ(c[1].value().timestamptz_us(), 1704164645123456);
    EXPECT_EQ(c[2].value().timestamptz_us(), INT64_MAX);
    EXPECT_EQ(c[3].value().timestamptz_us(), INT64_MIN);
    EXPECT_EQ(c[4].value().kind_case(), v1::Value::kTimestamptzUs); /* zero is still set */
    EXPECT_EQ(c[5].value().timestamptz_us(), -63745056000000000);
    EXPECT_EQ(c[6].value().kind_case(), v1::Value::kTimestampUs);
    EXPECT_EQ(c[6].value().timestamp_us(), 1704164645123456);
    EXPECT_EQ(c[7].value().timestamp_us(), INT64_MAX);
    EXPECT_EQ(c[8].value().timestamp_us(), INT64_MIN);
}

TEST(CoreProtobufWire, ArraysAreListsOfScalarValues)
{
    const std::string a = "a", with_comma = "with,comma", num = "1.50", json = "{\"k\": [1]}";
    const std::string bytes("\x00\xff", 2), inet = "10.0.0.1";
    ArrayHolder ints({v_int(1), v_null(), v_int(-3)}, {3});
    ArrayHolder texts({v_text(a), v_text(with_comma), v_null()}, {3});
    ArrayHolder numerics({v_numeric(num), v_null()}, {2});
    ArrayHolder uuids({v_uuid(kUuid), v_uuid(kZeroUuid)}, {2});
    ArrayHolder jsons({v_json(json)}, {1});
    ArrayHolder byteas({v_bytes(bytes), v_null()}, {2});
    ArrayHolder tstz({v_timestamptz(WS_TIMESTAMP_NEG_INFINITY), v_timestamptz(5)}, {2});
    ArrayHolder ts({v_timestamp(WS_TIMESTAMP_POS_INFINITY)}, {1});
    ArrayHolder dates({v_date(19723)}, {1});
    ArrayHolder others({v_other(inet)}, {1});
    ArrayHolder bools({v_bool(false), v_bool(true)}, {2});
    ArrayHolder doubles({v_double(-0.0), v_double(NAN)}, {2});
    ArrayHolder empty({}, {});
    ArrayHolder matrix({v_int(1), v_int(2), v_int(3), v_int(4), v_int(5), v_null()}, {2, 3});
    ArrayHolder bounded({v_int(7), v_int(8)}, {2}, {-1});
    ArrayHolder bounded_2d({v_int(1), v_int(2), v_int(3), v_int(4)}, {2, 2}, {1, 0});
    ArrayHolder all_null({v_null()}, {1});
    ChangeBuilder b(WS_OP_INSERT);
    b.after({{"id", INT4OID, v_int(1), true},
             {"ints", 1007, ints.value()},
             {"texts", 1009, texts.value()},
             {"numerics", 1231, numerics.value()},
             {"uuids", 2951, uuids.value()},
             {"jsons", 3807, jsons.value()},
             {"byteas", 1001, byteas.value()},
             {"tstz", 1185, tstz.value()},
             {"ts", 1115, ts.value()},
             {"dates", 1182, dates.value()},
             {"others", 1041, others.value()},
             {"bools", 1000, bools.value()},
             {"doubles", 1022, doubles.value()},
             {"empty", 1007, empty.value()},
             {"matrix", 1007, matrix.value()},
             {"bounded", 1007, bounded.value()},
             {"bounded_2d", 1007, bounded_2d.value()},
             {"all_null", 1007, all_null.value()}});
    TestEncoder enc(kOneEvent);
    expect_same_as_reference(enc, *b.get());

    v1::ChangeEvent event;
    ASSERT_TRUE(event.ParseFromString(enc.event(b.get())));
    const auto &c = event.after().columns();
    for (int i = 1; i < c.size(); i++)
        EXPECT_EQ(c[i].value().kind_case(), v1::Value::kArray) << c[i].name();

    const v1::ArrayValue &i1 = c[1].value().array();
    ASSERT_EQ(i1.elements_size(), 3);
    EXPECT_EQ(i1.elements(0).int64_value(), 1);
    EXPECT_TRUE(i1.elements(1).is_null());
    EXPECT_EQ(i1.elements(2).int64_value(), -3);
    ASSERT_EQ(i1.dims_size(), 1);
    EXPECT_EQ(i1.dims(0), 3);
    EXPECT_EQ(i1.lower_bounds_size(), 0); /* all 1: left out */

    EXPECT_EQ(c[2].value().array().elements(1).string_value(), "with,comma");
    EXPECT_TRUE(c[2].value().array().elements(2).is_null());
    EXPECT_EQ(c[3].value().array().elements(0).numeric(), "1.50");
    EXPECT_EQ(c[4].value().array().elements(0).uuid(),
              std::string(reinterpret_cast<const char *>(kUuid), 16));
    EXPECT_EQ(c[4].value().array().elements(1).kind_case(), v1::Value::kUuid);
    EXPECT_EQ(c[5].value().array().elements(0).json(), json);
    EXPECT_EQ(c[6].value().array().elements(0).bytes_value(), bytes);
    EXPECT_EQ(c[7].value().array().elements(0).timestamptz_us(), INT64_MIN);
    EXPECT_EQ(c[7].value().array().elements(1).kind_case(), v1::Value::kTimestamptzUs);
    EXPECT_EQ(c[8].value().array().elements(0).timestamp_us(), INT64_MAX);
    EXPECT_EQ(c[9].value().array().elements(0).date_days(), 19723);
    EXPECT_EQ(c[10].value().array().elements(0).string_value(), "10.0.0.1");
    EXPECT_EQ(c[11].value().array().elements(0).kind_case(), v1::Value::kBoolValue);
    EXPECT_FALSE(c[11].value().array().elements(0).bool_value());
    EXPECT_TRUE(std::signbit(c[12].value().array().elements(0).double_value()));
    EXPECT_TRUE(std::isnan(c[12].value().array().elements(1).double_value()));

    const v1::ArrayValue &e = c[13].value().array();
    EXPECT_EQ(e.elements_size(), 0);
    EXPECT_EQ(e.dims_size(), 0);
    EXPECT_EQ(e.lower_bounds_size(), 0);

    const v1::ArrayValue &m = c[14].value().array(); /* {{1,2,3},{4,5,NULL}} row-major */
    ASSERT_EQ(m.elements_size(), 6);
    ASSERT_EQ(m.dims_size(), 2);
    EXPECT_EQ(m.dims(0), 2);
    EXPECT_EQ(m.dims(1), 3);
    EXPECT_EQ(m.elements(2).int64_value(), 3);
    EXPECT_EQ(m.elements(3).int64_value(), 4);
    EXPECT_TRUE(m.elements(5).is_null());
    EXPECT_EQ(m.lower_bounds_size(), 0);

    const v1::ArrayValue &lb = c[15].value().array(); /* '[-1:0]={7,8}' */
    ASSERT_EQ(lb.lower_bounds_size(), 1);
    EXPECT_EQ(lb.lower_bounds(0), -1);
    const v1::ArrayValue &lb2 = c[16].value().array(); /* one bound not 1: both are written */
    ASSERT_EQ(lb2.lower_bounds_size(), 2);
    EXPECT_EQ(lb2.lower_bounds(0), 1);
    EXPECT_EQ(lb2.lower_bounds(1), 0);
    EXPECT_TRUE(c[17].value().array().elements(0).is_null());
}

TEST(CoreProtobufWire, ArraysInKeysAndOldRowsMatchTheGeneratedSerializer)
{
    ArrayHolder key({v_int(1), v_int(2)}, {2});
    ArrayHolder old_key({v_int(1)}, {1}, {5});
    ArrayHolder value({v_null()}, {1});
    ChangeBuilder b(WS_OP_UPDATE);
    b.before({{"k", 1007, old_key.value(), true}});
    b.after({{"k", 1007, key.value(), true}, {"v", 1007, value.value()}});
    TestEncoder enc(kOneEvent);
    expect_same_as_reference(enc, *b.get());
}

TEST(CoreProtobufWire, UuidAsTextIsTheCanonicalStringInColumnsAndArrays)
{
    ArrayHolder uuids({v_uuid(kUuid), v_null()}, {2});
    ChangeBuilder b(WS_OP_INSERT);
    b.after({{"u", UUIDOID, v_uuid(kUuid), true},
             {"zero", UUIDOID, v_uuid(kZeroUuid)},
             {"us", 2951, uuids.value()}});
    TestEncoder enc(Settings{{"uuid-as-text", "on"}});
    v1::ChangeEvent event;
    ASSERT_TRUE(event.ParseFromString(enc.event(b.get())));
    const auto &c = event.after().columns();
    EXPECT_EQ(c[0].value().kind_case(), v1::Value::kStringValue);
    EXPECT_EQ(c[0].value().string_value(), "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
    EXPECT_EQ(c[1].value().string_value(), "00000000-0000-0000-0000-000000000000");
    EXPECT_EQ(c[2].value().array().elements(0).string_value(),
              "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
    EXPECT_TRUE(c[2].value().array().elements(1).is_null());
    /* the key is the same text */
    v1::Row key;
    ASSERT_TRUE(key.ParseFromString(enc.key(b.get())));
    EXPECT_EQ(key.columns(0).value().string_value(), "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
    /* the re-serialized message is the same bytes: sizes and tags are right */
    EXPECT_EQ(event.SerializeAsString(), enc.event(b.get()));

    TestEncoder bytes_enc(Settings{{"uuid-as-text", "off"}});
    ASSERT_TRUE(event.ParseFromString(bytes_enc.event(b.get())));
    EXPECT_EQ(event.after().columns(0).value().kind_case(), v1::Value::kUuid);
}

TEST(CoreProtobufWire, InvalidArraysAreRejectedAsBugs)
{
    ArrayHolder short_of_elements({v_int(1)}, {2});
    ArrayHolder negative({}, {-1});
    ArrayHolder toast({v_toast()}, {1});
    ArrayHolder inner({v_int(1)}, {1});
    ArrayHolder nested({inner.value()}, {1});
    TestEncoder enc(kOneEvent);
    struct Case {
        ArrayHolder *array;
        const char *message;
    } cases[] = {{&short_of_elements, "has 1 array elements, its dimensions say 2"},
                 {&negative, "negative length"},
                 {&toast, "is an unchanged TOAST value"},
                 {&nested, "is an array inside an array"}};
    for (const Case &c : cases) {
        ChangeBuilder b(WS_OP_INSERT);
        b.after({{"a", 1007, c.array->value()}});
        ws_error err = enc.failure(b.get());
        EXPECT_EQ(err.kind, WS_ERR_INTERNAL);
        EXPECT_NE(std::string(err.message).find(c.message), std::string::npos) << err.message;
    }
}

TEST(CoreProtobufWire, ZeroAndEmptyOneofMembersAreWrittenAndStaySet)
{
    /* proto3 leaves defaults out, except for a oneof member that is set */
    const std::string empty;
    ws_value no_data{}; /* an empty text the shim hands over without any pointer */
    no_data.kind = WS_VALUE_TEXT;
    ChangeBuilder b(WS_OP_INSERT);
    b.after({{"i", INT8OID, v_int(0), true},
             {"f", FLOAT8OID, v_double(0.0)},
             {"nf", FLOAT8OID, v_double(-0.0)},
             {"b", BOOLOID, v_bool(false)},
             {"s", TEXTOID, v_text(empty)},
             {"y", BYTEAOID, v_bytes(empty)},
             {"t", TIMESTAMPTZOID, v_timestamp(0)},
             {"d", DATEOID, v_date(0)},
             {"u", UUIDOID, v_uuid(kZeroUuid)},
             {"n", NUMERICOID, v_numeric(empty)},
             {"j", JSONOID, v_json(empty)},
             {"o", 869, v_other(empty)},
             {"nodata", TEXTOID, no_data}});
    TestEncoder enc(kOneEvent);
    expect_same_as_reference(enc, *b.get());

    v1::ChangeEvent event;
    ASSERT_TRUE(event.ParseFromString(enc.event(b.get())));
    const auto &c = event.after().columns();
    EXPECT_EQ(c[0].value().kind_case(), v1::Value::kInt64Value);
    EXPECT_EQ(c[1].value().kind_case(), v1::Value::kDoubleValue);
    EXPECT_TRUE(std::signbit(c[2].value().double_value()));
    EXPECT_EQ(c[3].value().kind_case(), v1::Value::kBoolValue);
    EXPECT_EQ(c[4].value().kind_case(), v1::Value::kStringValue);
    EXPECT_EQ(c[5].value().kind_case(), v1::Value::kBytesValue);
    EXPECT_EQ(c[6].value().kind_case(), v1::Value::kTimestampUs);
    EXPECT_EQ(c[7].value().kind_case(), v1::Value::kDateDays);
    EXPECT_EQ(c[8].value().kind_case(), v1::Value::kUuid);
    EXPECT_EQ(c[9].value().kind_case(), v1::Value::kNumeric);
    EXPECT_EQ(c[10].value().kind_case(), v1::Value::kJson);
    EXPECT_EQ(c[11].value().kind_case(), v1::Value::kStringValue);
    EXPECT_EQ(c[12].value().kind_case(), v1::Value::kStringValue);
    EXPECT_EQ(event.key(0).value().kind_case(), v1::Value::kInt64Value);
}

TEST(CoreProtobufWire, DefaultMetadataAndSourceFieldsAreLeftOut)
{
    /* empty names, type OID 0, no type name, zero xid/LSNs/time, no database: all omitted */
    ChangeBuilder b(WS_OP_INSERT);
    b.after({{"", 0, v_int(1), true, -1, false, 0, nullptr},
             {"x", 0, v_null(), false, -1, false, 0, ""}});
    b.change().source = ws_source{};
    TestEncoder enc(kOneEvent);
    expect_same_as_reference(enc, *b.get());

    /* negative commit time (before 1970) is a 10-byte varint, not left out */
    ChangeBuilder c(WS_OP_UPDATE);
    c.before({{"id", INT4OID, v_int(1), true}});
    c.after({{"id", INT4OID, v_int(1), true}});
    c.change().source.commit_time_us = -5;
    c.change().source.xid = 4294967295u;
    c.change().source.commit_lsn = UINT64_MAX;
    c.change().source.change_lsn = 1;
    c.change().source.origin = "";
    expect_same_as_reference(enc, *c.get());
    c.change().source.origin = "node_eu";
    expect_same_as_reference(enc, *c.get());
}

TEST(CoreProtobufWire, LengthAndVarintBoundaries)
{
    TestEncoder enc(kOneEvent);
    const size_t lengths[] = {0, 1, 126, 127, 128, 129, 16383, 16384, 16385, 2097151, 2097152};
    const int64_t ints[] = {0,         1,         127,       128,       16383,     16384,
                            -1,        -128,      INT32_MAX, INT32_MIN, 1LL << 35, -(1LL << 35),
                            INT64_MAX, INT64_MIN, 1LL << 62, 1LL << 56};
    for (size_t len : lengths) {
        std::string text(len, 'a');
        std::string name(len % 300, 'n');
        std::string type_name(len % 200, 't');
        ChangeBuilder b(WS_OP_INSERT);
        b.after({{"id", INT8OID, v_int(static_cast<int64_t>(len)), true},
                 {name.c_str(), TEXTOID, v_text(text), false, -1, false, 0, type_name.c_str()}});
        expect_same_as_reference(enc, *b.get());
    }
    for (int64_t i : ints) {
        ChangeBuilder b(WS_OP_INSERT);
        b.after({{"id", INT8OID, v_int(i), true},
                 {"t", TIMESTAMPTZOID, v_timestamp(i)},
                 {"d", DATEOID, v_date(static_cast<int32_t>(i))}});
        b.change().source.xid = static_cast<uint32_t>(i);
        b.change().source.commit_lsn = static_cast<uint64_t>(i);
        b.change().source.commit_time_us = i;
        b.change().event_count = static_cast<uint64_t>(i);
        expect_same_as_reference(enc, *b.get());
    }
}

TEST(CoreProtobufWire, EveryOperationAndEventShape)
{
    const std::string old_name = "Anne", new_name = "Anne Marie", content("bin\0ary", 7);
    const char *tables[] = {"public.orders", "", "s.t"};
    std::vector<std::unique_ptr<ChangeBuilder>> changes;
    auto add = [&](ws_op op) -> ChangeBuilder & {
        changes.push_back(std::make_unique<ChangeBuilder>(op));
        return *changes.back();
    };

    add(WS_OP_INSERT)
        .after({{"id", INT4OID, v_int(1), true, -1, true, 0, "integer"},
                {"name", TEXTOID, v_text(new_name), false, -1, false, 0, "text"}});
    add(WS_OP_READ).after({{"id", INT4OID, v_int(1), true}, {"name", TEXTOID, v_text(new_name)}});
    auto &update = add(WS_OP_UPDATE);
    update.before({{"id", INT4OID, v_int(1), true}, {"name", TEXTOID, v_text(old_name)}});
    update.after({{"id", INT4OID, v_int(2), true}, {"name", TEXTOID, v_text(new_name)}});
    add(WS_OP_UPDATE).after({{"id", INT4OID, v_int(1), true}, {"name", TEXTOID, v_toast()}});
    add(WS_OP_DELETE).before({{"id", INT4OID, v_int(1), true}});
    add(WS_OP_DELETE); /* REPLICA IDENTITY NOTHING: no old row, no key */
    auto &full = add(WS_OP_DELETE);
    full.before({{"id", INT4OID, v_int(1), true}, {"name", TEXTOID, v_null()}});
    add(WS_OP_INSERT).after({}); /* a table without columns */
    auto &empty_before = add(WS_OP_UPDATE);
    empty_before.before({});
    empty_before.after({{"name", TEXTOID, v_text(new_name)}});

    auto &truncate = add(WS_OP_TRUNCATE);
    truncate.change().truncated_tables = tables;
    truncate.change().ntruncated = 3;
    add(WS_OP_TRUNCATE).change().ntruncated = 0;

    auto &message = add(WS_OP_MESSAGE);
    message.table(nullptr, nullptr);
    message.change().message_prefix = "audit";
    message.change().message_content = content.data();
    message.change().message_len = content.size();
    message.change().message_transactional = true;
    auto &bare_message = add(WS_OP_MESSAGE); /* empty prefix and content, not transactional */
    bare_message.table(nullptr, nullptr);
    bare_message.change().source.xid = 0;
    bare_message.change().source.commit_time_us = 0;

    auto &begin = add(WS_OP_BEGIN);
    begin.table(nullptr, nullptr);
    begin.change().event_count = 5; /* only COMMIT carries it */
    auto &commit = add(WS_OP_COMMIT);
    commit.table(nullptr, nullptr);
    commit.change().event_count = 1000;
    commit.change().source.origin = "upstream";
    auto &empty_commit = add(WS_OP_COMMIT);
    empty_commit.table(nullptr, nullptr);
    empty_commit.change().source.xid = 4294967295u;
    empty_commit.change().source.commit_lsn = UINT64_MAX;

    const std::pair<Settings, bool> variants[] = {
        {kOneEvent, true}, {Settings{{"include-before", "off"}, {"key-change", "update"}}, false}};
    for (const auto &[settings, include_before] : variants) {
        TestEncoder enc(settings);
        for (int round = 0; round < 2; round++) /* the second round runs on warm caches */
            for (const auto &c : changes) {
                SCOPED_TRACE("op " + std::to_string(c->get()->op));
                expect_same_as_reference(enc, *c->get(), include_before);
            }
    }
}

TEST(CoreProtobufWire, VarintFramingPrefixesTheSameBytes)
{
    const std::string big(300, 'z');
    TestEncoder enc({{"framing", "varint"}, {"key-change", "update"}});
    for (size_t len : {size_t{0}, size_t{100}, size_t{300}, size_t{20000}}) {
        std::string text(len, 'q');
        ChangeBuilder b(WS_OP_INSERT);
        b.after({{"id", INT4OID, v_int(1), true}, {"body", TEXTOID, v_text(text)}});
        std::string framed = enc.event(b.get());
        std::string want = ref_event(*b.get());
        uint64_t n = 0;
        size_t pos = 0;
        for (int shift = 0;; shift += 7) {
            auto byte = static_cast<unsigned char>(framed.at(pos++));
            n |= uint64_t{byte & 0x7Fu} << shift;
            if ((byte & 0x80) == 0)
                break;
        }
        EXPECT_EQ(n, want.size());
        EXPECT_TRUE(framed.substr(pos) == want);
        EXPECT_TRUE(enc.key(b.get()) == ref_key(*b.get())); /* keys are never framed */
    }
}

TEST(CoreProtobufWire, CachedColumnsFollowSchemaChanges)
{
    /* one relation OID, its columns renamed, retyped, added, dropped: never stale bytes */
    const std::string v = "v";
    TestEncoder enc(kOneEvent);
    std::vector<std::vector<ColumnSpec>> shapes = {
        {{"id", INT4OID, v_int(1), true, -1, true, 0, "integer"},
         {"name", TEXTOID, v_text(v), false, -1, false, 0, "text"}},
        {{"id", INT4OID, v_int(1), true, -1, true, 0, "integer"},
         {"nam", TEXTOID, v_text(v), false, -1, false, 0, "text"}},
        {{"id", INT4OID, v_int(1), true, -1, true, 0, "integer"},
         {"namex", TEXTOID, v_text(v), false, -1, false, 0, "text"}},
        {{"id", INT8OID, v_int(1), true, -1, true, 0, "bigint"},
         {"namex", TEXTOID, v_text(v), false, -1, false, 0, "text"}},
        {{"id", INT8OID, v_int(1), true, -1, true, 0, "bigint"},
         {"namex", VARCHAROID, v_text(v), false, 14, false, 0, "character varying(10)"}},
        {{"id", INT8OID, v_int(1), true, -1, true, 0, "bigint"},
         {"namex", VARCHAROID, v_text(v), false, 24, false, 0, "character varying(20)"}},
        {{"id", INT8OID, v_int(1), true, -1, true, 0, "bigint"},
         {"namex", VARCHAROID, v_text(v), false, 24, false, 0, "character varying(20)"},
         {"added", BOOLOID, v_bool(true), false, -1, false, 0, "boolean"}},
        {{"id", INT8OID, v_int(1), true, -1, true, 0, "bigint"}},
        {{"id", INT8OID, v_int(1), true, -1, true, 0, nullptr}},
        {{"id", INT8OID, v_int(1), false, -1, true, 0, nullptr}}, /* key dropped */
    };
    for (int round = 0; round < 2; round++)
        for (const auto &shape : shapes) {
            ChangeBuilder insert(WS_OP_INSERT);
            insert.after(shape);
            expect_same_as_reference(enc, *insert.get());
            ChangeBuilder del(WS_OP_DELETE);
            del.before(shape);
            expect_same_as_reference(enc, *del.get());
        }

    /* a renamed table and database keep their relation OID */
    ChangeBuilder renamed(WS_OP_INSERT);
    renamed.after(shapes[0]);
    expect_same_as_reference(enc, *renamed.get());
    renamed.change().source.table = "orders_v2";
    expect_same_as_reference(enc, *renamed.get());
    renamed.change().source.schema = "archive";
    expect_same_as_reference(enc, *renamed.get());
    renamed.change().source.database = "shop2";
    expect_same_as_reference(enc, *renamed.get());
    renamed.change().source.table = "orders";
    expect_same_as_reference(enc, *renamed.get());
}

TEST(CoreProtobufWire, InterleavedTablesKeepTheirOwnColumns)
{
    const std::string t = "t";
    ChangeBuilder a(WS_OP_INSERT), b(WS_OP_UPDATE), c(WS_OP_DELETE), none(WS_OP_INSERT);
    a.after({{"id", INT4OID, v_int(1), true, -1, true, 0, "integer"}});
    b.table("sales", "lines");
    b.before({{"order_id", INT8OID, v_int(1), true}, {"line", INT4OID, v_int(2), true}});
    b.after({{"order_id", INT8OID, v_int(1), true},
             {"line", INT4OID, v_int(3), true},
             {"note", TEXTOID, v_text(t)}});
    c.table("sales", "lines");
    c.before({{"order_id", INT8OID, v_int(1), true}, {"line", INT4OID, v_int(3), true}});
    none.table("x", "y");
    none.after({{"z", TEXTOID, v_text(t)}});
    TestEncoder enc(kOneEvent);
    for (int round = 0; round < 3; round++)
        for (const ChangeBuilder *change : {&a, &b, &c, &none, &b, &a, &none, &c})
            expect_same_as_reference(enc, *change->get());
}

TEST(CoreProtobufWire, RandomChangesMatchTheGeneratedSerializer)
{
    /* many random rows through one encoder: every kind, NULLs, keys, a few tables */
    std::mt19937_64 rng(20240607);
    auto pick = [&](uint64_t n) { return rng() % n; };
    std::deque<std::string> texts;
    auto random_text = [&]() -> const std::string & {
        static const size_t lens[] = {0, 1, 5, 127, 128, 300, 20000};
        std::string s(lens[pick(7)], 'a');
        for (char &ch : s)
            ch = static_cast<char>(pick(256));
        texts.push_back(std::move(s));
        return texts.back();
    };
    auto random_value = [&](ws_value_kind kind) -> ws_value {
        if (pick(8) == 0)
            return v_null();
        if (pick(16) == 0)
            return v_toast();
        int64_t i = static_cast<int64_t>(rng()) >> pick(64);
        switch (kind) {
        case WS_VALUE_INT64:
            return v_int(i);
        case WS_VALUE_DOUBLE: {
            uint64_t bits = rng();
            double d;
            std::memcpy(&d, &bits, sizeof(d));
            return v_double(pick(4) == 0 ? 0.0 : d);
        }
        case WS_VALUE_BOOL:
            return v_bool(pick(2) == 0);
        case WS_VALUE_TIMESTAMP:
            return v_timestamp(i);
        case WS_VALUE_DATE:
            return v_date(static_cast<int32_t>(i));
        case WS_VALUE_UUID: {
            unsigned char u[16];
            for (unsigned char &x : u)
                x = static_cast<unsigned char>(pick(256));
            return v_uuid(u);
        }
        default:
            return v_text_kind(kind, random_text());
        }
    };
    const ws_value_kind kinds[] = {
        WS_VALUE_INT64,     WS_VALUE_DOUBLE, WS_VALUE_BOOL,     WS_VALUE_TEXT,    WS_VALUE_BYTES,
        WS_VALUE_TIMESTAMP, WS_VALUE_DATE,   WS_VALUE_UUID,     WS_VALUE_NUMERIC, WS_VALUE_JSON,
        WS_VALUE_TIME,      WS_VALUE_TIMETZ, WS_VALUE_INTERVAL, WS_VALUE_OTHER};
    const char *names[] = {"id", "a", "bb", "name", "x_y_z", ""};
    const char *type_names[] = {"integer", "text", "", "numeric(14,4)", "timestamp with time zone"};

    struct Variant {
        Settings settings;
        bool include_before;
        bool framed;
    };
    const Variant variants[] = {
        {kOneEvent, true, false},
        {Settings{{"include-before", "off"}, {"key-change", "update"}}, false, false},
        {Settings{{"framing", "varint"}, {"key-change", "update"}}, true, true}};
    for (const Variant &variant : variants) {
        TestEncoder enc(variant.settings);
        bool include_before = variant.include_before, framed = variant.framed;
        for (int n = 0; n < 1500; n++) {
            static const ws_op ops[] = {WS_OP_INSERT, WS_OP_UPDATE, WS_OP_DELETE, WS_OP_READ};
            ChangeBuilder b(ops[pick(4)]);
            b.table("public", pick(2) == 0 ? "t1" : "t2");
            b.change().source.xid = static_cast<uint32_t>(rng());
            b.change().source.commit_lsn = rng() >> pick(64);
            b.change().source.change_lsn = rng() >> pick(64);
            b.change().source.commit_time_us = static_cast<int64_t>(rng()) >> pick(64);
            if (pick(10) == 0)
                b.change().source.origin = "o";
            size_t ncols = pick(6);
            std::vector<ColumnSpec> after, before;
            for (size_t i = 0; i < ncols; i++) {
                ws_value_kind kind = kinds[pick(14)];
                ColumnSpec spec{names[pick(6)], static_cast<uint32_t>(rng() >> pick(64)),
                                random_value(kind), pick(3) == 0};
                spec.type_name = pick(5) == 0 ? nullptr : type_names[pick(5)];
                after.push_back(spec);
                if (spec.is_key || pick(4) == 0) {
                    spec.value = random_value(kind);
                    before.push_back(spec);
                }
            }
            if (b.get()->op != WS_OP_DELETE)
                b.after(after);
            if (b.get()->op != WS_OP_INSERT && b.get()->op != WS_OP_READ && pick(4) != 0)
                b.before(before);

            std::string bytes = enc.event(b.get());
            std::string want = ref_event(*b.get(), include_before);
            if (framed) {
                ASSERT_GE(bytes.size(), want.size());
                bytes = bytes.substr(bytes.size() - want.size());
            }
            ASSERT_TRUE(bytes == want) << "event " << n;
            ASSERT_TRUE(enc.key(b.get()) == ref_key(*b.get())) << "key " << n;
        }
    }
}

TEST(CoreProtobufWire, HundredMegabyteValueMatchesTheGeneratedSerializer)
{
    std::string huge(100u * 1024 * 1024, 'v');
    huge[12345] = '\0';
    huge.back() = 'w';
    ChangeBuilder b(WS_OP_UPDATE);
    b.before({{"id", INT4OID, v_int(1), true}, {"doc", BYTEAOID, v_bytes(huge)}});
    b.after({{"id", INT4OID, v_int(1), true}, {"doc", TEXTOID, v_text(huge)}});
    TestEncoder enc(kOneEvent);
    {
        std::string bytes = enc.event(b.get());
        std::string want = ref_event(*b.get());
        ASSERT_EQ(bytes.size(), want.size());
        EXPECT_TRUE(bytes == want);
    }
    /* and the encoder goes on with small rows after letting go of the huge buffer */
    const std::string small = "small";
    ChangeBuilder next(WS_OP_INSERT);
    next.after({{"id", INT4OID, v_int(2), true}, {"doc", TEXTOID, v_text(small)}});
    expect_same_as_reference(enc, *next.get());
}
