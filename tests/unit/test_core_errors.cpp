/*
 * test_core_errors.cpp: the one error contract of walship_core.h. Every failure fills a
 * ws_error whose kind decides the SQLSTATE on the C side, with the texts PostgreSQL shows.
 */
#include "boundary.hpp"
#include "core_test_support.hpp"

#include <gtest/gtest.h>

#include <new>
#include <stdexcept>
#include <string>

using namespace walship_test;

namespace
{

const char *const kOptionsHint = "Options of the walship output plugin are name=value pairs; "
                                 "see \"Output plugin options\" in walship's documentation.";

} // namespace

TEST(CoreErrors, OptionErrorsCarryTheirKindAndTheHint)
{
    ws_error bad = option_failure("format", "xml");
    EXPECT_EQ(bad.kind, WS_ERR_INVALID_OPTION);
    EXPECT_STREQ(bad.message,
                 "invalid value \"xml\" for option \"format\": expected protobuf or json");
    EXPECT_STREQ(bad.detail, "");
    EXPECT_STREQ(bad.hint, kOptionsHint);

    ws_error unknown = option_failure("no-such-option", "1");
    EXPECT_EQ(unknown.kind, WS_ERR_INVALID_OPTION);
    EXPECT_STREQ(unknown.hint, kOptionsHint);

    ws_error err{};
    OptionsPtr opts = make_options({{"format", "json"}});
    EXPECT_EQ(ws_options_set(opts.get(), "format", "json", &err), WS_ERROR);
    EXPECT_EQ(err.kind, WS_ERR_CONFLICTING_OPTION);
    EXPECT_STREQ(err.hint, kOptionsHint);

    /* success leaves kind NONE */
    OptionsPtr fresh = make_options({});
    EXPECT_EQ(ws_options_set(fresh.get(), "truncate", "off", &err), WS_OK);
    EXPECT_EQ(err.kind, WS_ERR_NONE);
}

TEST(CoreErrors, ABrokenChangeFromTheShimIsABug)
{
    TestEncoder enc;
    ChangeBuilder unknown(static_cast<ws_op>(42));
    EXPECT_EQ(enc.failure(unknown.get()).kind, WS_ERR_INTERNAL);
    ws_encoded out{};
    ws_error err{};
    EXPECT_EQ(ws_encode(enc.get(), nullptr, true, &out, &err), WS_ERROR);
    EXPECT_EQ(err.kind, WS_ERR_INTERNAL);

    /* a row that does not have its table's shape */
    const std::string name = "x";
    ChangeBuilder shape(WS_OP_INSERT);
    shape.after({{"id", INT4OID, v_int(1), true}, {"name", TEXTOID, v_text(name)}});
    shape.with_table(enc.get());
    ChangeBuilder narrow(WS_OP_INSERT);
    narrow.after({{"id", INT4OID, v_int(1), true}});
    narrow.change().table = shape.get()->table;
    ws_error mismatch = enc.failure(narrow.get());
    EXPECT_EQ(mismatch.kind, WS_ERR_INTERNAL);
    EXPECT_STREQ(mismatch.message, "invalid change: the new row has 1 columns, its table 2");
}

TEST(CoreErrors, ATableDescriptionWhoseOldTupleIsNotItsColumnsIsRefused)
{
    TestEncoder enc;
    ChangeBuilder b(WS_OP_UPDATE);
    b.after({{"id", INT4OID, v_int(1), true}});
    b.before({{"other", INT4OID, v_int(1), true}});
    ws_table_desc desc{};
    desc.schema = "public";
    desc.table = "t";
    desc.columns = b.get()->after;
    desc.before = b.get()->before;
    ws_error err{};
    EXPECT_EQ(ws_table_create(enc.get(), &desc, &err), nullptr);
    EXPECT_EQ(err.kind, WS_ERR_INTERNAL);
    EXPECT_STREQ(err.message, "invalid table description: old tuple column \"other\" is not a "
                              "column of public.t (or out of order)");
}

TEST(CoreErrors, DecodeEventRefusalsSayWhatItTakes)
{
    char *json = nullptr;
    ws_error err{};
    EXPECT_EQ(ws_event_to_json(reinterpret_cast<const uint8_t *>("\xff\xff"), 2, &json, &err),
              WS_ERROR);
    EXPECT_EQ(err.kind, WS_ERR_INVALID_DATA);
    EXPECT_STREQ(err.hint, "walship.decode_event() takes one walship.v1.ChangeEvent as the "
                           "walship output plugin writes it with format=protobuf.");
}

TEST(CoreErrors, TheGuardMapsEveryExceptionAndNeverCutsACharacter)
{
    ws_error err{};
    EXPECT_EQ(walship::guarded(&err, [] { throw std::bad_alloc(); }), WS_ERROR);
    EXPECT_EQ(err.kind, WS_ERR_OUT_OF_MEMORY);
    EXPECT_STREQ(err.message, "out of memory");
    EXPECT_EQ(walship::guarded(&err, [] { throw std::logic_error("oops"); }), WS_ERROR);
    EXPECT_EQ(err.kind, WS_ERR_INTERNAL);
    EXPECT_STREQ(err.message, "oops");
    EXPECT_EQ(walship::guarded(&err, [] { throw 42; }), WS_ERROR);
    EXPECT_EQ(err.kind, WS_ERR_INTERNAL);
    EXPECT_EQ(walship::guarded(nullptr, [] { throw 42; }), WS_ERROR); /* no error wanted */

    /* 1022 ASCII bytes, then a 3-byte character that does not fit: it is left out whole */
    std::string long_text(WS_ERRMSG_SIZE - 2, 'a');
    long_text += "\xe2\x82\xac"; /* the euro sign */
    long_text += "tail";
    EXPECT_EQ(
        walship::guarded(
            &err, [&] { throw walship::CoreError(WS_ERR_KAFKA, long_text, long_text, "hint"); }),
        WS_ERROR);
    EXPECT_EQ(err.kind, WS_ERR_KAFKA);
    EXPECT_EQ(std::string(err.message), std::string(WS_ERRMSG_SIZE - 2, 'a'));
    EXPECT_TRUE(valid_utf8(err.detail));
    EXPECT_STREQ(err.hint, "hint");
}
