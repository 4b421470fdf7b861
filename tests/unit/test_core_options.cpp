/*
 * test_core_options.cpp: the output plugin options as a user sets them
 * (pg_recvlogical -o name=value, the SQL decoding functions, a stream's options):
 * defaults, accepted spellings, and the exact error messages for bad input.
 */
#include "core_test_support.hpp"

using namespace walship_test;

namespace
{

ws_plugin_settings settings_of(const OptionsPtr &opts)
{
    ws_plugin_settings s;
    std::memset(&s, 0xAB, sizeof(s));
    ws_options_settings(opts.get(), &s);
    return s;
}

} // namespace

TEST(CoreOptions, Defaults)
{
    OptionsPtr opts = make_options({});
    ws_plugin_settings s = settings_of(opts);
    EXPECT_EQ(s.format, WS_FORMAT_PROTOBUF);
    EXPECT_FALSE(s.include_transaction);
    EXPECT_TRUE(s.include_before);
    EXPECT_TRUE(s.truncate);
    EXPECT_FALSE(s.messages);
    EXPECT_EQ(s.origin, WS_ORIGIN_ANY);
    EXPECT_FALSE(s.partition_root);
    EXPECT_TRUE(ws_options_table_included(opts.get(), "public", "orders"));
    EXPECT_FALSE(ws_options_message_included(opts.get(), "audit"));
}

TEST(CoreOptions, EveryOptionIsSettable)
{
    OptionsPtr opts = make_options({{"format", "json"},
                                    {"json-schema", "false"},
                                    {"decimal-handling", "precise"},
                                    {"interval-handling", "string"},
                                    {"include-transaction", "on"},
                                    {"include-before", "off"},
                                    {"truncate", "no"},
                                    {"messages", "true"},
                                    {"tables", "public.*"},
                                    {"exclude-tables", "public.secret"},
                                    {"origin", "none"},
                                    {"partition-root", "yes"},
                                    {"framing", "varint"},
                                    {"topic-prefix", "prod.shop"}});
    ws_plugin_settings s = settings_of(opts);
    EXPECT_EQ(s.format, WS_FORMAT_JSON);
    EXPECT_TRUE(s.include_transaction);
    EXPECT_FALSE(s.include_before);
    EXPECT_FALSE(s.truncate);
    EXPECT_TRUE(s.messages);
    EXPECT_EQ(s.origin, WS_ORIGIN_NONE);
    EXPECT_TRUE(s.partition_root);
}

TEST(CoreOptions, EnumValuesAreCaseInsensitive)
{
    OptionsPtr opts = make_options({{"format", "JSON"}, {"origin", "None"}});
    ws_plugin_settings s = settings_of(opts);
    EXPECT_EQ(s.format, WS_FORMAT_JSON);
    EXPECT_EQ(s.origin, WS_ORIGIN_NONE);
}

TEST(CoreOptions, BooleanSpellings)
{
    for (const char *yes : {"true", "TRUE", "on", "On", "1", "yes", "YES"}) {
        OptionsPtr opts = make_options({{"include-transaction", yes}});
        EXPECT_TRUE(settings_of(opts).include_transaction) << yes;
    }
    for (const char *no : {"false", "False", "off", "OFF", "0", "no", "No"}) {
        OptionsPtr opts = make_options({{"include-before", no}});
        EXPECT_FALSE(settings_of(opts).include_before) << no;
    }
    /* pg_recvlogical -o include-transaction (no value) means true */
    OptionsPtr opts = make_options({{"include-transaction", nullptr}});
    EXPECT_TRUE(settings_of(opts).include_transaction);
}

TEST(CoreOptions, BadValuesNameTheOptionAndTheAcceptedValues)
{
    EXPECT_EQ(option_error("format", "xml"),
              "invalid value \"xml\" for option \"format\": expected protobuf or json");
    EXPECT_EQ(option_error("decimal-handling", "exact"),
              "invalid value \"exact\" for option \"decimal-handling\": expected string, "
              "precise or double");
    EXPECT_EQ(option_error("interval-handling", "iso"),
              "invalid value \"iso\" for option \"interval-handling\": expected numeric or string");
    EXPECT_EQ(option_error("origin", "local"),
              "invalid value \"local\" for option \"origin\": expected any or none");
    EXPECT_EQ(option_error("framing", "length"),
              "invalid value \"length\" for option \"framing\": expected none or varint");
    EXPECT_EQ(option_error("include-before", "maybe"),
              "invalid value \"maybe\" for option \"include-before\": expected a boolean (true, "
              "false, on, off, yes, no, 1 or 0)");
    EXPECT_EQ(option_error("json-schema", "t"),
              "invalid value \"t\" for option \"json-schema\": expected a boolean (true, false, "
              "on, off, yes, no, 1 or 0)");
    EXPECT_EQ(option_error("format", nullptr),
              "option \"format\" requires a value: expected protobuf or json");
    EXPECT_EQ(option_error("format", ""),
              "invalid value \"\" for option \"format\": expected protobuf or json");
}

TEST(CoreOptions, UuidAsTextAndSourceCommitLsnAreBooleans)
{
    for (const char *name : {"uuid-as-text", "source-commit-lsn"}) {
        EXPECT_EQ(option_error(name, "on"), "") << name;
        EXPECT_EQ(option_error(name, "FALSE"), "") << name;
        EXPECT_EQ(option_error(name, nullptr), "") << name; /* alone: true */
        EXPECT_EQ(option_error(name, "text"),
                  std::string("invalid value \"text\" for option \"") + name +
                      "\": expected a boolean (true, false, on, off, yes, no, 1 or 0)");
        EXPECT_EQ(option_error(name, ""),
                  std::string("invalid value \"\" for option \"") + name +
                      "\": expected a boolean (true, false, on, off, yes, no, 1 or 0)");
    }
    /* the underscore spelling is a stream option's; the plugin takes its own names only */
    EXPECT_NE(option_error("uuid_as_text", "on").find("unrecognized option \"uuid_as_text\""),
              std::string::npos);
    OptionsPtr twice = make_options({{"source-commit-lsn", "on"}});
    ws_error err{};
    EXPECT_EQ(ws_options_set(twice.get(), "source-commit-lsn", "off", &err), WS_ERROR);
    EXPECT_EQ(err.kind, WS_ERR_CONFLICTING_OPTION);
    EXPECT_STREQ(err.message, "conflicting or redundant options: \"source-commit-lsn\"");
}

TEST(CoreOptions, UnknownOptionListsTheValidOnes)
{
    EXPECT_EQ(option_error("foo", "1"),
              "unrecognized option \"foo\" for the walship output plugin; valid options are: "
              "format, json-schema, decimal-handling, interval-handling, include-transaction, "
              "include-before, truncate, tombstones, replace-null-with-default, key-change, "
              "messages, tables, exclude-tables, origin, "
              "partition-root, framing, topic-prefix, uuid-as-text, source-commit-lsn");
    /* names are exact: no underscores, no case folding */
    EXPECT_NE(option_error("include_transaction", "on"), "");
    EXPECT_NE(option_error("Format", "json"), "");
}

TEST(CoreOptions, SettingAnOptionTwiceIsAnError)
{
    ws_error err{};
    OptionsPtr opts = make_options({{"format", "json"}});
    EXPECT_EQ(ws_options_set(opts.get(), "format", "json", &err), WS_ERROR);
    EXPECT_STREQ(err.message, "conflicting or redundant options: \"format\"");
    /* a failed attempt does not count as set */
    OptionsPtr fresh = make_options({});
    EXPECT_EQ(ws_options_set(fresh.get(), "truncate", "sometimes", &err), WS_ERROR);
    EXPECT_EQ(ws_options_set(fresh.get(), "truncate", "off", &err), WS_OK) << err.message;
}

TEST(CoreOptions, MessagesTakeABooleanOrPrefixes)
{
    OptionsPtr all = make_options({{"messages", "on"}});
    EXPECT_TRUE(ws_options_message_included(all.get(), "anything"));

    OptionsPtr some = make_options({{"messages", "audit, app_*,\"a,b\""}});
    EXPECT_TRUE(settings_of(some).messages);
    EXPECT_TRUE(ws_options_message_included(some.get(), "audit"));
    EXPECT_TRUE(ws_options_message_included(some.get(), "app_orders"));
    EXPECT_TRUE(ws_options_message_included(some.get(), "a,b"));
    EXPECT_FALSE(ws_options_message_included(some.get(), "Audit"));
    EXPECT_FALSE(ws_options_message_included(some.get(), "auditing"));

    OptionsPtr none = make_options({{"messages", "off"}});
    EXPECT_FALSE(ws_options_message_included(none.get(), "audit"));

    EXPECT_EQ(option_error("messages", ""),
              "invalid value \"\" for option \"messages\": expected a boolean or a "
              "comma-separated list of message prefixes, e.g. true or audit,app_*");
    EXPECT_NE(option_error("messages", "a,,b").find("empty message prefix"), std::string::npos);
}

TEST(CoreOptions, TablePatterns)
{
    OptionsPtr opts =
        make_options({{"tables", "public.*, \"My Schema\".\"Tab,le\", *.audit_*, Sales.Orders"}});
    auto included = [&](const char *schema, const char *table) {
        return ws_options_table_included(opts.get(), schema, table);
    };
    EXPECT_TRUE(included("public", "orders"));
    EXPECT_TRUE(included("public", "Anything"));
    EXPECT_TRUE(included("My Schema", "Tab,le"));
    EXPECT_FALSE(included("My Schema", "Table"));
    EXPECT_FALSE(included("my schema", "Tab,le"));
    EXPECT_TRUE(included("billing", "audit_log"));
    EXPECT_FALSE(included("billing", "log_audit_"));
    /* unquoted names fold to lower case, as in SQL */
    EXPECT_TRUE(included("sales", "orders"));
    EXPECT_FALSE(included("Sales", "Orders"));
    EXPECT_FALSE(included("billing", "invoices"));
}

TEST(CoreOptions, ExcludeTablesWinsOverTables)
{
    OptionsPtr opts =
        make_options({{"tables", "public.*"}, {"exclude-tables", "public.secret_*,*.tmp"}});
    EXPECT_TRUE(ws_options_table_included(opts.get(), "public", "orders"));
    EXPECT_FALSE(ws_options_table_included(opts.get(), "public", "secret_keys"));
    EXPECT_FALSE(ws_options_table_included(opts.get(), "public", "tmp"));
    EXPECT_FALSE(ws_options_table_included(opts.get(), "other", "orders"));

    OptionsPtr only_exclude = make_options({{"exclude-tables", "public.audit"}});
    EXPECT_TRUE(ws_options_table_included(only_exclude.get(), "other", "audit"));
    EXPECT_FALSE(ws_options_table_included(only_exclude.get(), "public", "audit"));
}

TEST(CoreOptions, QuotedAsteriskIsLiteral)
{
    OptionsPtr opts = make_options({{"tables", "public.\"a*\""}});
    EXPECT_TRUE(ws_options_table_included(opts.get(), "public", "a*"));
    EXPECT_FALSE(ws_options_table_included(opts.get(), "public", "ab"));
    OptionsPtr quote = make_options({{"tables", "public.\"say \"\"hi\"\"\""}});
    EXPECT_TRUE(ws_options_table_included(quote.get(), "public", "say \"hi\""));
}

TEST(CoreOptions, BadTablePatternsExplainWhatIsWrong)
{
    EXPECT_EQ(option_error("tables", "orders"),
              "invalid value \"orders\" for option \"tables\": table pattern \"orders\" is not "
              "schema-qualified; write schema.table, e.g. public.orders or public.*");
    EXPECT_EQ(option_error("tables", ""),
              "invalid value \"\" for option \"tables\": expected a comma-separated list of "
              "schema.table patterns, e.g. public.orders, public.*, *.audit_*, \"My "
              "Schema\".\"My Table\"");
    EXPECT_EQ(option_error("tables", nullptr),
              "option \"tables\" requires a value: expected a comma-separated list of "
              "schema.table patterns, e.g. public.orders, public.*, *.audit_*, \"My "
              "Schema\".\"My Table\"");
    EXPECT_NE(option_error("tables", "public.a,,public.b").find("empty table pattern"),
              std::string::npos);
    EXPECT_NE(option_error("tables", "public.a,").find("empty table pattern"), std::string::npos);
    EXPECT_NE(option_error("tables", "public.").find("has an empty schema or table name"),
              std::string::npos);
    EXPECT_NE(option_error("tables", ".orders").find("has an empty schema or table name"),
              std::string::npos);
    EXPECT_NE(option_error("tables", "db.public.orders").find("has more than two parts"),
              std::string::npos);
    EXPECT_NE(option_error("tables", "public.\"orders").find("unterminated quoted name"),
              std::string::npos);
    EXPECT_NE(option_error("tables", "public.my-table").find("unexpected character '-'"),
              std::string::npos);
    EXPECT_NE(option_error("tables", "my schema.orders").find("unexpected space"),
              std::string::npos);
    EXPECT_NE(option_error("tables", "\"a\"b.c").find("unexpected text after the quoted name"),
              std::string::npos);
    EXPECT_NE(option_error("exclude-tables", "orders").find("for option \"exclude-tables\""),
              std::string::npos);
}

TEST(CoreOptions, TopicPrefix)
{
    EXPECT_EQ(option_error("topic-prefix", "prod-eu.shop_1"), "");
    EXPECT_EQ(option_error("topic-prefix", ""), "");
    EXPECT_EQ(option_error("topic-prefix", "bad prefix"),
              "invalid value \"bad prefix\" for option \"topic-prefix\": expected letters, "
              "digits, '.', '_' or '-' (the prefix of Kafka topic names), or an empty string for "
              "the database name");
}

TEST(CoreOptions, LongErrorMessagesAreTruncatedSafely)
{
    /* a long name made of 2-byte UTF-8 characters: the message must stay valid UTF-8 */
    std::string name;
    for (int i = 0; i < 700; i++)
        name += "\xC3\xA9";
    std::string err = option_error(name.c_str(), "1");
    EXPECT_LT(err.size(), static_cast<size_t>(WS_ERRMSG_SIZE));
    EXPECT_TRUE(valid_utf8(err));
    EXPECT_EQ(err.rfind("unrecognized option", 0), 0u);
}

TEST(CoreOptions, NullArgumentsAreHandled)
{
    ws_error err{};
    EXPECT_EQ(ws_options_set(nullptr, "format", "json", &err), WS_ERROR);
    OptionsPtr opts = make_options({});
    EXPECT_EQ(ws_options_set(opts.get(), nullptr, "json", &err), WS_ERROR);
    ws_options_destroy(nullptr);
    ws_plugin_settings s;
    ws_options_settings(nullptr, &s);
    EXPECT_EQ(s.format, WS_FORMAT_PROTOBUF);
}

TEST(CoreOptions, TruncateIsOnForProtobufAndOffForJsonUnlessGiven)
{
    /* JSON follows Debezium's skipped.operations=t: its consumers (Flink's debezium-json)
     * fail on a TRUNCATE event */
    auto truncate = [](std::vector<std::pair<const char *, const char *>> pairs) {
        walship_test::OptionsPtr opts = walship_test::make_options(pairs);
        ws_plugin_settings settings{};
        ws_options_settings(opts.get(), &settings);
        return settings.truncate;
    };
    EXPECT_TRUE(truncate({}));
    EXPECT_FALSE(truncate({{"format", "json"}}));
    EXPECT_TRUE(truncate({{"format", "json"}, {"truncate", "on"}}));
    EXPECT_TRUE(truncate({{"truncate", "on"}, {"format", "json"}}));
    EXPECT_FALSE(truncate({{"truncate", "off"}}));
}
