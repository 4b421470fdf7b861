/*
 * options.cpp: parsing and validation of walship's output plugin options, and the
 * table and message-prefix filters they define.
 */
#include "core_error.hpp"
#include "options.hpp"

#include <cstring>

namespace walship
{

namespace
{

bool ascii_iequals(std::string_view a, std::string_view b)
{
    if (a.size() != b.size())
        return false;
    for (size_t i = 0; i < a.size(); i++) {
        char x = a[i], y = b[i];
        if (x >= 'A' && x <= 'Z')
            x = static_cast<char>(x - 'A' + 'a');
        if (y >= 'A' && y <= 'Z')
            y = static_cast<char>(y - 'A' + 'a');
        if (x != y)
            return false;
    }
    return true;
}

bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/*
 * Every option error says where the options are described: the same hint whether the
 * option came from pg_recvlogical -o, the SQL decoding functions or create_stream.
 */
constexpr const char *kOptionsHint =
    "Options of the walship output plugin are name=value pairs; see \"Output plugin "
    "options\" in walship's documentation.";

[[noreturn]] void invalid_option(const std::string &message)
{
    throw CoreError(WS_ERR_INVALID_OPTION, message, {}, kOptionsHint);
}

[[noreturn]] void invalid_value(const char *option, const char *value, const std::string &expected)
{
    invalid_option("invalid value \"" + std::string(value) + "\" for option \"" + option +
                   "\": " + expected);
}

const char *const kBooleanValues = "expected a boolean (true, false, on, off, yes, no, 1 or 0)";

/*
 * The spellings PostgreSQL accepts for boolean settings, without its unique-prefix
 * rule, so that a message prefix such as "t" is never mistaken for a boolean.
 */
bool parse_boolean(const char *option, const char *value, bool *ok = nullptr)
{
    if (value == nullptr) /* "-o include-before" alone means true, as in pgoutput */
        return true;
    std::string_view v(value);
    for (const char *yes : {"true", "on", "yes", "1"})
        if (ascii_iequals(v, yes))
            return true;
    for (const char *no : {"false", "off", "no", "0"})
        if (ascii_iequals(v, no))
            return false;
    if (ok != nullptr) {
        *ok = false;
        return false;
    }
    invalid_value(option, value, kBooleanValues);
}

const char *require_value(const char *option, const char *value, const char *expected)
{
    if (value == nullptr)
        invalid_option("option \"" + std::string(option) + "\" requires a value: " + expected);
    return value;
}

/*
 * Splits a comma-separated list of names or schema.name patterns. Parts may be
 * double-quoted ("" is a quote inside); unquoted parts are trimmed, and, when
 * fold_case is set (SQL identifiers), folded to lower case as PostgreSQL does.
 * Unquoted '*' becomes the wildcard NUL. Returns one vector of parts per entry.
 */
struct PatternLexer {
    const char *option;
    const char *value;
    std::string_view text;
    size_t pos = 0;

    [[noreturn]] void fail(const std::string &why) const
    {
        invalid_value(option, value, why);
    }

    void skip_spaces()
    {
        while (pos < text.size() && is_space(text[pos]))
            pos++;
    }

    bool at_end() const
    {
        return pos >= text.size();
    }

    /*
     * One identifier-like part, up to (not including) one of the stop characters.
     * identifier_chars restricts unquoted parts to what an SQL identifier can hold.
     */
    std::string part(const char *stops, bool fold_case, bool identifier_chars)
    {
        std::string out;
        skip_spaces();
        if (pos < text.size() && text[pos] == '"') {
            pos++;
            for (;;) {
                if (pos >= text.size())
                    fail("unterminated quoted name in \"" + std::string(text) + "\"");
                char c = text[pos++];
                if (c == '"') {
                    if (pos < text.size() && text[pos] == '"') {
                        out += '"';
                        pos++;
                        continue;
                    }
                    break;
                }
                out += c;
            }
            if (out.empty())
                fail("a quoted name cannot be empty (\"\")");
            skip_spaces();
            if (pos < text.size() && std::strchr(stops, text[pos]) == nullptr)
                fail("unexpected text after the quoted name \"" + out + "\"");
            return out;
        }
        size_t start = pos;
        while (pos < text.size() && std::strchr(stops, text[pos]) == nullptr) {
            char c = text[pos];
            if (c == '"')
                fail("unexpected quote in \"" + std::string(text.substr(start)) +
                     "\"; quote a whole name, e.g. \"My Table\"");
            if (identifier_chars && !is_space(c)) {
                auto u = static_cast<unsigned char>(c);
                bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                          (c >= '0' && c <= '9') || c == '_' || c == '$' || c == '*' || u >= 0x80;
                if (!ok)
                    fail(std::string("unexpected character '") + c + "' in \"" + std::string(text) +
                         "\"; quote names that contain it, e.g. \"my-schema\".\"my-table\"");
            }
            pos++;
        }
        size_t end = pos;
        while (end > start && is_space(text[end - 1]))
            end--;
        for (size_t i = start; i < end; i++) {
            char c = text[i];
            if (is_space(c) && identifier_chars)
                fail("unexpected space in \"" + std::string(text.substr(start, end - start)) +
                     "\"; quote names that contain spaces, e.g. \"My Schema\".\"My Table\"");
            if (c == '*')
                c = '\0';
            else if (fold_case && c >= 'A' && c <= 'Z')
                c = static_cast<char>(c - 'A' + 'a');
            out += c;
        }
        return out;
    }
};

const char *const kTablesExpected = "expected a comma-separated list of schema.table patterns, "
                                    "e.g. public.orders, public.*, *.audit_*, "
                                    "\"My Schema\".\"My Table\"";

std::vector<TablePattern> parse_table_patterns(const char *option, const char *value)
{
    require_value(option, value, kTablesExpected);
    PatternLexer lex{option, value, std::string_view(value)};
    std::vector<TablePattern> patterns;
    lex.skip_spaces();
    if (lex.at_end())
        lex.fail(kTablesExpected);
    for (;;) {
        size_t entry_start = lex.pos;
        std::string schema = lex.part(".,", true, true);
        if (lex.at_end() || lex.text[lex.pos] != '.') {
            std::string entry(lex.text.substr(entry_start, lex.pos - entry_start));
            if (schema.empty())
                lex.fail("empty table pattern in the list; " + std::string(kTablesExpected));
            lex.fail("table pattern \"" + entry +
                     "\" is not schema-qualified; write schema.table, e.g. public." + entry +
                     " or public.*");
        }
        lex.pos++; /* '.' */
        std::string table = lex.part(".,", true, true);
        std::string entry(lex.text.substr(entry_start, lex.pos - entry_start));
        if (schema.empty() || table.empty())
            lex.fail("table pattern \"" + entry + "\" has an empty schema or table name");
        if (!lex.at_end() && lex.text[lex.pos] == '.') {
            size_t comma = lex.text.find(',', lex.pos);
            std::string whole(lex.text.substr(entry_start, comma == std::string_view::npos
                                                               ? std::string_view::npos
                                                               : comma - entry_start));
            lex.fail("table pattern \"" + whole +
                     "\" has more than two parts; write schema.table (the database is the "
                     "one being decoded)");
        }
        patterns.push_back(TablePattern{NamePattern{schema}, NamePattern{table}});
        if (lex.at_end())
            break;
        lex.pos++; /* ',' */
        lex.skip_spaces();
        if (lex.at_end() || lex.text[lex.pos] == ',')
            lex.fail("empty table pattern in the list; " + std::string(kTablesExpected));
    }
    return patterns;
}

const char *const kMessagesExpected =
    "expected a boolean or a comma-separated list of message prefixes, e.g. true or "
    "audit,app_*";

std::vector<NamePattern> parse_message_prefixes(const char *option, const char *value)
{
    PatternLexer lex{option, value, std::string_view(value)};
    std::vector<NamePattern> prefixes;
    lex.skip_spaces();
    if (lex.at_end())
        lex.fail(kMessagesExpected);
    for (;;) {
        std::string prefix = lex.part(",", false, false);
        if (prefix.empty())
            lex.fail("empty message prefix in the list; " + std::string(kMessagesExpected));
        if (!lex.at_end() && lex.text[lex.pos] != ',')
            lex.fail("unexpected text after a quoted prefix; " + std::string(kMessagesExpected));
        prefixes.push_back(NamePattern{prefix});
        if (lex.at_end())
            break;
        lex.pos++; /* ',' */
    }
    return prefixes;
}

template <typename Enum, size_t N>
Enum parse_choice(const char *option, const char *value, const char *const (&names)[N],
                  const Enum (&values)[N], const char *expected)
{
    require_value(option, value, expected);
    for (size_t i = 0; i < N; i++)
        if (ascii_iequals(value, names[i]))
            return values[i];
    invalid_value(option, value, expected);
}

struct OptionSpec {
    const char *name;
    void (*apply)(Options &opts, const char *name, const char *value);
};

/* The option table: names, in the order the error message lists them. */
const OptionSpec kOptions[] = {
    {"format",
     [](Options &o, const char *n, const char *v) {
         o.format =
             parse_choice(n, v, {"protobuf", "json"}, {EventFormat::Protobuf, EventFormat::Json},
                          "expected protobuf or json");
     }},
    {"json-schema",
     [](Options &o, const char *n, const char *v) { o.json_schema = parse_boolean(n, v); }},
    {"decimal-handling",
     [](Options &o, const char *n, const char *v) {
         o.decimal_handling = parse_choice(
             n, v, {"string", "precise", "double"},
             {DecimalHandling::String, DecimalHandling::Precise, DecimalHandling::Double},
             "expected string, precise or double");
     }},
    {"interval-handling",
     [](Options &o, const char *n, const char *v) {
         o.interval_handling = parse_choice(n, v, {"numeric", "string"},
                                            {IntervalHandling::Numeric, IntervalHandling::String},
                                            "expected numeric or string");
     }},
    {"include-transaction",
     [](Options &o, const char *n, const char *v) { o.include_transaction = parse_boolean(n, v); }},
    {"include-before",
     [](Options &o, const char *n, const char *v) { o.include_before = parse_boolean(n, v); }},
    {"truncate",
     [](Options &o, const char *n, const char *v) { o.truncate = parse_boolean(n, v) ? 1 : 0; }},
    {"tombstones",
     [](Options &o, const char *n, const char *v) { o.tombstones = parse_boolean(n, v); }},
    {"replace-null-with-default",
     [](Options &o, const char *n, const char *v) {
         o.replace_null_with_default = parse_boolean(n, v);
     }},
    {"key-change",
     [](Options &o, const char *n, const char *v) {
         o.key_change = parse_choice(n, v, {"delete_create", "update"},
                                     {KeyChange::DeleteCreate, KeyChange::Update},
                                     "expected delete_create or update");
     }},
    {"messages",
     [](Options &o, const char *n, const char *v) {
         bool is_boolean = true;
         bool on = parse_boolean(n, v, &is_boolean);
         if (is_boolean) {
             o.messages = on;
             o.message_prefixes.clear();
         } else {
             o.message_prefixes = parse_message_prefixes(n, v);
             o.messages = true;
         }
     }},
    {"tables",
     [](Options &o, const char *n, const char *v) { o.tables = parse_table_patterns(n, v); }},
    {"exclude-tables", [](Options &o, const char *n,
                          const char *v) { o.exclude_tables = parse_table_patterns(n, v); }},
    {"origin",
     [](Options &o, const char *n, const char *v) {
         o.origin = parse_choice(n, v, {"any", "none"}, {OriginFilter::Any, OriginFilter::None},
                                 "expected any or none");
     }},
    {"partition-root",
     [](Options &o, const char *n, const char *v) { o.partition_root = parse_boolean(n, v); }},
    {"framing",
     [](Options &o, const char *n, const char *v) {
         o.framing = parse_choice(n, v, {"none", "varint"}, {Framing::None, Framing::Varint},
                                  "expected none or varint");
     }},
    {"topic-prefix",
     [](Options &o, const char *n, const char *v) {
         const char *expected = "expected letters, digits, '.', '_' or '-' (the prefix of Kafka "
                                "topic names), or an empty string for the database name";
         require_value(n, v, expected);
         for (const char *p = v; *p != '\0'; p++) {
             char c = *p;
             bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                       c == '.' || c == '_' || c == '-';
             if (!ok)
                 invalid_value(n, v, expected);
         }
         if (std::strlen(v) > 200)
             invalid_value(n, v, "a topic prefix is at most 200 characters long");
         o.topic_prefix = v;
     }},
    {"uuid-as-text",
     [](Options &o, const char *n, const char *v) { o.uuid_as_text = parse_boolean(n, v); }},
    {"source-commit-lsn",
     [](Options &o, const char *n, const char *v) { o.source_commit_lsn = parse_boolean(n, v); }},
};

static_assert(sizeof(kOptions) / sizeof(kOptions[0]) <= 32, "seen_ has one bit per option");

std::string option_list()
{
    std::string list;
    for (const OptionSpec &spec : kOptions) {
        if (!list.empty())
            list += ", ";
        list += spec.name;
    }
    return list;
}

/* Classic glob matching with backtracking to the last '*' (NUL in the pattern). */
bool glob_match(std::string_view pattern, std::string_view name)
{
    size_t p = 0, n = 0;
    size_t star = std::string_view::npos, star_n = 0;
    while (n < name.size()) {
        if (p < pattern.size() && pattern[p] == '\0') {
            star = p++;
            star_n = n;
        } else if (p < pattern.size() && pattern[p] == name[n]) {
            p++;
            n++;
        } else if (star != std::string_view::npos) {
            p = star + 1;
            n = ++star_n;
        } else {
            return false;
        }
    }
    while (p < pattern.size() && pattern[p] == '\0')
        p++;
    return p == pattern.size();
}

bool any_table_matches(const std::vector<TablePattern> &patterns, std::string_view schema,
                       std::string_view table)
{
    for (const TablePattern &pattern : patterns)
        if (pattern.schema.matches(schema) && pattern.table.matches(table))
            return true;
    return false;
}

} // namespace

bool NamePattern::matches(std::string_view name) const
{
    return glob_match(glob, name);
}

void Options::set(const char *name, const char *value)
{
    if (name == nullptr)
        invalid_option("option name must not be null");
    for (size_t i = 0; i < sizeof(kOptions) / sizeof(kOptions[0]); i++) {
        const OptionSpec &spec = kOptions[i];
        if (std::strcmp(spec.name, name) != 0)
            continue;
        uint32_t bit = uint32_t{1} << i;
        if ((seen_ & bit) != 0)
            throw CoreError(WS_ERR_CONFLICTING_OPTION,
                            "conflicting or redundant options: \"" + std::string(name) + "\"", {},
                            kOptionsHint);
        spec.apply(*this, spec.name, value);
        seen_ |= bit;
        return;
    }
    invalid_option("unrecognized option \"" + std::string(name) +
                   "\" for the walship output plugin; valid options are: " + option_list());
}

bool Options::table_included(std::string_view schema, std::string_view table) const
{
    if (!tables.empty() && !any_table_matches(tables, schema, table))
        return false;
    return !any_table_matches(exclude_tables, schema, table);
}

bool Options::table_excluded(std::string_view schema, std::string_view table) const
{
    return any_table_matches(exclude_tables, schema, table);
}

bool Options::message_included(std::string_view prefix) const
{
    if (!messages)
        return false;
    if (message_prefixes.empty())
        return true;
    for (const NamePattern &pattern : message_prefixes)
        if (pattern.matches(prefix))
            return true;
    return false;
}

} // namespace walship
