/*
 * What a change becomes in Kafka (plugin/core/records.cpp): tombstones after deletes and
 * a key change as delete + tombstone + create, Debezium's defaults, in both formats.
 */
#include "core_test_support.hpp"
#include "records.hpp"

#include <gtest/gtest.h>

using namespace walship_test;

namespace
{

const unsigned char kZeroUuid[16] = {};
const Settings kJsonPayload{{"format", "json"}, {"json-schema", "off"}};

Json payload(const TestEncoder::Record &r)
{
    return parse_json(r.value);
}

/* id 1 -> 2: the old tuple carries the old key (REPLICA IDENTITY DEFAULT logs it then) */
ChangeBuilder key_change(const std::string &name)
{
    ChangeBuilder b(WS_OP_UPDATE);
    b.before({{"id", INT4OID, v_int(1), true, -1, true}});
    b.after({{"id", INT4OID, v_int(2), true, -1, true}, {"name", TEXTOID, v_text(name)}});
    return b;
}

} // namespace

TEST(CoreRecords, ADeleteIsFollowedByATombstoneOfItsKey)
{
    ChangeBuilder b(WS_OP_DELETE);
    b.before({{"id", INT4OID, v_int(7), true, -1, true}});
    for (const Settings &settings : {kJsonPayload, Settings{}}) {
        TestEncoder enc(settings);
        auto records = enc.records(b.get());
        ASSERT_EQ(records.size(), 2u);
        EXPECT_FALSE(records[0].tombstone);
        EXPECT_TRUE(records[1].tombstone);
        EXPECT_EQ(records[1].key, records[0].key);
        EXPECT_FALSE(records[1].key.empty());
        EXPECT_EQ(records[1].header, "");
    }
    TestEncoder enc(kJsonPayload);
    EXPECT_EQ(parse_json(enc.records(b.get())[0].key)["id"].num(), "7");
}

TEST(CoreRecords, TombstonesOffKeepsTheDeleteAlone)
{
    ChangeBuilder b(WS_OP_DELETE);
    b.before({{"id", INT4OID, v_int(7), true, -1, true}});
    TestEncoder enc({{"format", "json"}, {"tombstones", "off"}});
    EXPECT_EQ(enc.records(b.get()).size(), 1u);
}

TEST(CoreRecords, ATableWithoutAKeyGetsATombstoneWithoutAKey)
{
    /* as Debezium's (REPLICA IDENTITY FULL without a primary key) */
    const std::string text = "x";
    ChangeBuilder b(WS_OP_DELETE);
    b.before({{"a", INT4OID, v_int(7)}, {"b", TEXTOID, v_text(text)}});
    TestEncoder enc(kJsonPayload);
    auto records = enc.records(b.get());
    ASSERT_EQ(records.size(), 2u);
    EXPECT_TRUE(records[0].key.empty());
    EXPECT_TRUE(records[1].tombstone);
    EXPECT_TRUE(records[1].key.empty());
}

TEST(CoreRecords, WithoutKeysThereAreNoTombstones)
{
    /* a client of the plugin (pg_recvlogical) gets events; a tombstone is a Kafka record */
    ChangeBuilder b(WS_OP_DELETE);
    b.before({{"id", INT4OID, v_int(7), true, -1, true}});
    OptionsPtr opts = make_options({{"format", "json"}});
    ws_error err{};
    std::unique_ptr<ws_encoder, void (*)(ws_encoder *)> enc(
        ws_encoder_create(opts.get(), "shop", &err), ws_encoder_destroy);
    ws_encoded out{};
    ASSERT_EQ(ws_encode(enc.get(), b.get(), false, &out, &err), WS_OK) << err.message;
    EXPECT_EQ(out.nrecords, 1);
    EXPECT_EQ(out.records[0].keylen, 0u);
}

TEST(CoreRecords, AKeyChangeIsDeleteTombstoneCreateWithTheOtherKeyInAHeader)
{
    const std::string name = "Anne";
    ChangeBuilder b = key_change(name);
    TestEncoder enc(kJsonPayload);
    auto records = enc.records(b.get());
    ASSERT_EQ(records.size(), 3u);

    Json d = payload(records[0]);
    EXPECT_EQ(d["op"].str(), "d");
    EXPECT_EQ(d["before"]["id"].num(), "1");
    EXPECT_TRUE(d["after"].is_null());
    EXPECT_EQ(parse_json(records[0].key)["id"].num(), "1");

    EXPECT_TRUE(records[1].tombstone);
    EXPECT_EQ(records[1].key, records[0].key);

    Json c = payload(records[2]);
    EXPECT_EQ(c["op"].str(), "c");
    EXPECT_TRUE(c["before"].is_null());
    EXPECT_EQ(c["after"]["id"].num(), "2");
    EXPECT_EQ(c["after"]["name"].str(), "Anne");
    EXPECT_EQ(parse_json(records[2].key)["id"].num(), "2");

    /* the same change: the same source */
    EXPECT_EQ(d["source"]["lsn"].num(), c["source"]["lsn"].num());

    /* the other key as Kafka Connect's header converter writes Debezium's key struct */
    EXPECT_EQ(records[0].header, "__debezium.newkey={\"id\":2}");
    EXPECT_EQ(records[1].header, records[0].header);
    EXPECT_EQ(records[2].header, "__debezium.oldkey={\"id\":1}");
}

TEST(CoreRecords, TheKeyHeaderIsTheKeyWithoutItsSchema)
{
    const std::string name = "Anne";
    ChangeBuilder b = key_change(name);
    TestEncoder enc({{"format", "json"}});
    auto records = enc.records(b.get());
    ASSERT_EQ(records.size(), 3u);
    EXPECT_TRUE(parse_json(records[0].key).has("schema"));
    EXPECT_EQ(records[0].header, "__debezium.newkey={\"id\":2}");
    EXPECT_EQ(records[2].header, "__debezium.oldkey={\"id\":1}");
}

TEST(CoreRecords, AKeyChangeWithoutTombstonesIsDeleteCreate)
{
    const std::string name = "Anne";
    ChangeBuilder b = key_change(name);
    TestEncoder enc({{"format", "json"}, {"json-schema", "off"}, {"tombstones", "off"}});
    auto records = enc.records(b.get());
    ASSERT_EQ(records.size(), 2u);
    EXPECT_EQ(payload(records[0])["op"].str(), "d");
    EXPECT_EQ(payload(records[1])["op"].str(), "c");
}

TEST(CoreRecords, KeyChangeUpdateKeepsOneUpdateKeyedByTheNewKey)
{
    const std::string name = "Anne";
    ChangeBuilder b = key_change(name);
    TestEncoder enc({{"format", "json"}, {"json-schema", "off"}, {"key-change", "update"}});
    auto records = enc.records(b.get());
    ASSERT_EQ(records.size(), 1u);
    Json u = payload(records[0]);
    EXPECT_EQ(u["op"].str(), "u");
    EXPECT_EQ(u["before"]["id"].num(), "1");
    EXPECT_EQ(parse_json(records[0].key)["id"].num(), "2");

    /* the old key, which no record names, for a snapshot to drop from its chunk */
    ws_encoded out = enc.encode(b.get());
    ASSERT_NE(out.moved_from_key, nullptr);
    EXPECT_EQ(parse_json(std::string(reinterpret_cast<const char *>(out.moved_from_key),
                                     out.moved_from_keylen))["id"]
                  .num(),
              "1");
    /* split key changes name both keys in their records: nothing moved unseen */
    TestEncoder split(kJsonPayload);
    EXPECT_EQ(split.encode(b.get()).moved_from_key, nullptr);
}

TEST(CoreRecords, ProtobufKeyChangesAreSplitToo)
{
    const std::string name = "Anne";
    ChangeBuilder b = key_change(name);
    TestEncoder enc;
    auto records = enc.records(b.get());
    ASSERT_EQ(records.size(), 3u);
    EXPECT_FALSE(records[0].tombstone);
    EXPECT_TRUE(records[1].tombstone);
    EXPECT_FALSE(records[2].tombstone);
    EXPECT_NE(records[0].key, records[2].key);
}

TEST(CoreRecords, AnUpdateThatKeepsItsKeyIsOneUpdate)
{
    /* REPLICA IDENTITY FULL logs the whole old row with every update */
    const std::string old_name = "Anne", new_name = "Anne Marie";
    ChangeBuilder b(WS_OP_UPDATE);
    b.before({{"id", INT4OID, v_int(1), true, -1, true}, {"name", TEXTOID, v_text(old_name)}});
    b.after({{"id", INT4OID, v_int(1), true, -1, true}, {"name", TEXTOID, v_text(new_name)}});
    TestEncoder enc(kJsonPayload);
    auto records = enc.records(b.get());
    ASSERT_EQ(records.size(), 1u);
    EXPECT_EQ(payload(records[0])["op"].str(), "u");
    EXPECT_EQ(records[0].header, "");

    /* a TOAST-ed key the server logs although it did not change: the new row has it as
     * an unchanged TOAST value */
    const std::string big_key(3000, 'k');
    ws_value unchanged{};
    unchanged.kind = WS_VALUE_UNCHANGED_TOAST;
    ChangeBuilder t(WS_OP_UPDATE);
    t.before({{"k", TEXTOID, v_text(big_key), true, -1, true}});
    t.after({{"k", TEXTOID, unchanged, true, -1, true}, {"name", TEXTOID, v_text(new_name)}});
    EXPECT_EQ(enc.records(t.get()).size(), 1u);
}

TEST(CoreRecords, KeyValuesCompareByKindAndContents)
{
    const std::string a = "abc", b = "abd";
    EXPECT_TRUE(walship::same_value(v_text(a), v_text(a)));
    EXPECT_FALSE(walship::same_value(v_text(a), v_text(b)));
    EXPECT_FALSE(walship::same_value(v_int(1), v_text(a)));
    EXPECT_TRUE(walship::same_value(v_null(), v_null()));
    EXPECT_FALSE(walship::same_value(v_int(1), v_int(2)));
    EXPECT_FALSE(walship::same_value(v_double(0.0), v_double(-0.0)));
    EXPECT_TRUE(walship::same_value(v_uuid(kZeroUuid), v_uuid(kZeroUuid)));
}
