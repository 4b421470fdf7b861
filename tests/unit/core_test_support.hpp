/*
 * core_test_support.hpp: helpers for the C++ core's unit tests.
 *
 * A strict little JSON parser (so tests check that every output is valid JSON and
 * then look at it the way a consumer would), builders for the flat ws_change views
 * the C shim hands to the core, and thin RAII wrappers around the C API.
 */
#ifndef WALSHIP_CORE_TEST_SUPPORT_HPP
#define WALSHIP_CORE_TEST_SUPPORT_HPP

#include "walship_core.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <deque>
#include <initializer_list>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace walship_test
{

/* ---------------------------------------------------------------- JSON */

struct Json {
    enum class Type { Null, Bool, Number, String, Array, Object };
    Type type = Type::Null;
    bool boolean = false;
    std::string text; /* String: decoded; Number: the literal as written */
    std::vector<Json> items;
    std::vector<std::pair<std::string, Json>> fields;

    bool is_null() const
    {
        return type == Type::Null;
    }
    bool has(const std::string &key) const
    {
        for (const auto &f : fields)
            if (f.first == key)
                return true;
        return false;
    }
    const Json &operator[](const std::string &key) const
    {
        if (type != Type::Object)
            throw std::runtime_error("not an object when looking up \"" + key + "\"");
        for (const auto &f : fields)
            if (f.first == key)
                return f.second;
        throw std::runtime_error("no field \"" + key + "\"");
    }
    const Json &operator[](size_t i) const
    {
        if (type != Type::Array || i >= items.size())
            throw std::runtime_error("no array element " + std::to_string(i));
        return items[i];
    }
    const std::string &str() const
    {
        if (type != Type::String)
            throw std::runtime_error("not a string");
        return text;
    }
    const std::string &num() const
    {
        if (type != Type::Number)
            throw std::runtime_error("not a number");
        return text;
    }
    long long integer() const
    {
        return std::stoll(num());
    }
    double real() const
    {
        return std::stod(num());
    }
    std::vector<std::string> keys() const
    {
        std::vector<std::string> out;
        for (const auto &f : fields)
            out.push_back(f.first);
        return out;
    }
    /* The field schema named `field` inside a struct schema's "fields". */
    const Json &field_schema(const std::string &field) const
    {
        for (const Json &f : (*this)["fields"].items)
            if (f["field"].str() == field)
                return f;
        throw std::runtime_error("no field schema \"" + field + "\"");
    }
};

class JsonParser
{
  public:
    static Json parse(const std::string &text)
    {
        JsonParser p(text);
        p.space();
        Json v = p.value();
        p.space();
        if (p.pos_ != text.size())
            p.fail("trailing text");
        return v;
    }

  private:
    explicit JsonParser(const std::string &text) : s_(text) {}

    [[noreturn]] void fail(const std::string &why) const
    {
        throw std::runtime_error("invalid JSON at offset " + std::to_string(pos_) + ": " + why);
    }
    void space()
    {
        while (pos_ < s_.size() &&
               (s_[pos_] == ' ' || s_[pos_] == '\n' || s_[pos_] == '\t' || s_[pos_] == '\r'))
            pos_++;
    }
    void expect(const char *word)
    {
        size_t n = std::strlen(word);
        if (s_.compare(pos_, n, word) != 0)
            fail(std::string("expected ") + word);
        pos_ += n;
    }
    Json value()
    {
        if (pos_ >= s_.size())
            fail("unexpected end");
        Json v;
        char c = s_[pos_];
        if (c == '{') {
            v.type = Json::Type::Object;
            pos_++;
            space();
            if (pos_ < s_.size() && s_[pos_] == '}') {
                pos_++;
                return v;
            }
            for (;;) {
                space();
                if (pos_ >= s_.size() || s_[pos_] != '"')
                    fail("expected a key");
                std::string key = string();
                space();
                expect(":");
                space();
                v.fields.emplace_back(key, value());
                space();
                if (pos_ < s_.size() && s_[pos_] == ',') {
                    pos_++;
                    continue;
                }
                expect("}");
                return v;
            }
        }
        if (c == '[') {
            v.type = Json::Type::Array;
            pos_++;
            space();
            if (pos_ < s_.size() && s_[pos_] == ']') {
                pos_++;
                return v;
            }
            for (;;) {
                space();
                v.items.push_back(value());
                space();
                if (pos_ < s_.size() && s_[pos_] == ',') {
                    pos_++;
                    continue;
                }
                expect("]");
                return v;
            }
        }
        if (c == '"') {
            v.type = Json::Type::String;
            v.text = string();
            return v;
        }
        if (c == 't') {
            expect("true");
            v.type = Json::Type::Bool;
            v.boolean = true;
            return v;
        }
        if (c == 'f') {
            expect("false");
            v.type = Json::Type::Bool;
            return v;
        }
        if (c == 'n') {
            expect("null");
            return v;
        }
        return number();
    }
    Json number()
    {
        size_t start = pos_;
        if (pos_ < s_.size() && s_[pos_] == '-')
            pos_++;
        if (pos_ >= s_.size() || !isdigit(s_[pos_]))
            fail("expected a value");
        if (s_[pos_] == '0')
            pos_++;
        else
            while (pos_ < s_.size() && isdigit(s_[pos_]))
                pos_++;
        if (pos_ < s_.size() && s_[pos_] == '.') {
            pos_++;
            if (pos_ >= s_.size() || !isdigit(s_[pos_]))
                fail("expected fraction digits");
            while (pos_ < s_.size() && isdigit(s_[pos_]))
                pos_++;
        }
        if (pos_ < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
            pos_++;
            if (pos_ < s_.size() && (s_[pos_] == '+' || s_[pos_] == '-'))
                pos_++;
            if (pos_ >= s_.size() || !isdigit(s_[pos_]))
                fail("expected exponent digits");
            while (pos_ < s_.size() && isdigit(s_[pos_]))
                pos_++;
        }
        Json v;
        v.type = Json::Type::Number;
        v.text = s_.substr(start, pos_ - start);
        return v;
    }
    static bool isdigit(char c)
    {
        return c >= '0' && c <= '9';
    }
    unsigned hex4()
    {
        if (pos_ + 4 > s_.size())
            fail("short \\u escape");
        unsigned v = 0;
        for (int i = 0; i < 4; i++) {
            char c = s_[pos_++];
            v <<= 4;
            if (c >= '0' && c <= '9')
                v |= static_cast<unsigned>(c - '0');
            else if (c >= 'a' && c <= 'f')
                v |= static_cast<unsigned>(c - 'a' + 10);
            else if (c >= 'A' && c <= 'F')
                v |= static_cast<unsigned>(c - 'A' + 10);
            else
                fail("bad \\u escape");
        }
        return v;
    }
    static void put_utf8(std::string &out, unsigned cp)
    {
        if (cp < 0x80) {
            out += static_cast<char>(cp);
        } else if (cp < 0x800) {
            out += static_cast<char>(0xC0 | (cp >> 6));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            out += static_cast<char>(0xE0 | (cp >> 12));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        } else {
            out += static_cast<char>(0xF0 | (cp >> 18));
            out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        }
    }
    std::string string()
    {
        pos_++; /* opening quote */
        std::string out;
        for (;;) {
            if (pos_ >= s_.size())
                fail("unterminated string");
            unsigned char c = static_cast<unsigned char>(s_[pos_++]);
            if (c == '"')
                return out;
            if (c < 0x20)
                fail("unescaped control character in a string");
            if (c != '\\') {
                out += static_cast<char>(c);
                continue;
            }
            if (pos_ >= s_.size())
                fail("unterminated escape");
            char e = s_[pos_++];
            switch (e) {
            case '"':
            case '\\':
            case '/':
                out += e;
                break;
            case 'b':
                out += '\b';
                break;
            case 'f':
                out += '\f';
                break;
            case 'n':
                out += '\n';
                break;
            case 'r':
                out += '\r';
                break;
            case 't':
                out += '\t';
                break;
            case 'u': {
                unsigned cp = hex4();
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    expect("\\u");
                    unsigned lo = hex4();
                    if (lo < 0xDC00 || lo > 0xDFFF)
                        fail("unpaired surrogate");
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                }
                put_utf8(out, cp);
                break;
            }
            default:
                fail("bad escape");
            }
        }
    }

    const std::string &s_;
    size_t pos_ = 0;
};

inline Json parse_json(const std::string &text)
{
    return JsonParser::parse(text);
}

/* True when every byte sequence in s is well-formed UTF-8. */
inline bool valid_utf8(const std::string &s)
{
    size_t i = 0;
    while (i < s.size()) {
        unsigned char c = static_cast<unsigned char>(s[i]);
        size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (n == 0 || i + n > s.size())
            return false;
        for (size_t k = 1; k < n; k++)
            if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80)
                return false;
        i += n;
    }
    return true;
}

/* ---------------------------------------------------------------- values */

inline ws_value v_null()
{
    ws_value v{};
    v.kind = WS_VALUE_NULL;
    return v;
}
inline ws_value v_toast()
{
    ws_value v{};
    v.kind = WS_VALUE_UNCHANGED_TOAST;
    return v;
}
inline ws_value v_int(int64_t i)
{
    ws_value v{};
    v.kind = WS_VALUE_INT64;
    v.v.i64 = i;
    return v;
}
inline ws_value v_double(double d)
{
    ws_value v{};
    v.kind = WS_VALUE_DOUBLE;
    v.v.f64 = d;
    return v;
}
inline ws_value v_bool(bool b)
{
    ws_value v{};
    v.kind = WS_VALUE_BOOL;
    v.v.b = b;
    return v;
}
/* Text-carrying kinds point at the caller's bytes, as the shim's views do. */
inline ws_value v_text_kind(ws_value_kind kind, const std::string &s)
{
    ws_value v{};
    v.kind = kind;
    v.data = s.data();
    v.len = s.size();
    return v;
}
inline ws_value v_text(const std::string &s)
{
    return v_text_kind(WS_VALUE_TEXT, s);
}
inline ws_value v_bytes(const std::string &s)
{
    return v_text_kind(WS_VALUE_BYTES, s);
}
inline ws_value v_numeric(const std::string &s)
{
    return v_text_kind(WS_VALUE_NUMERIC, s);
}
inline ws_value v_json(const std::string &s)
{
    return v_text_kind(WS_VALUE_JSON, s);
}
inline ws_value v_other(const std::string &s)
{
    return v_text_kind(WS_VALUE_OTHER, s);
}
inline ws_value v_timestamp(int64_t us)
{
    ws_value v{};
    v.kind = WS_VALUE_TIMESTAMP;
    v.v.i64 = us;
    return v;
}
inline ws_value v_timestamptz(int64_t us)
{
    ws_value v{};
    v.kind = WS_VALUE_TIMESTAMPTZ;
    v.v.i64 = us;
    return v;
}
/*
 * An array value element by element, as the shim hands protobuf's arrays over: it
 * keeps its elements and shape (the value points into it, so keep it alive and in
 * place while the value is used).
 */
struct ArrayHolder {
    std::vector<ws_value> elements;
    std::vector<int32_t> dims;
    std::vector<int32_t> lower_bounds;
    ws_array array{};

    ArrayHolder(std::vector<ws_value> e, std::vector<int32_t> d, std::vector<int32_t> lb = {})
        : elements(std::move(e)), dims(std::move(d)), lower_bounds(std::move(lb))
    {
        if (lower_bounds.empty())
            lower_bounds.assign(dims.size(), 1);
    }
    ArrayHolder(const ArrayHolder &) = delete;
    ArrayHolder &operator=(const ArrayHolder &) = delete;

    ws_value value()
    {
        array.elements = elements.data();
        array.nelements = static_cast<int>(elements.size());
        array.ndims = static_cast<int>(dims.size());
        array.dims = dims.data();
        array.lower_bounds = lower_bounds.data();
        ws_value v{};
        v.kind = WS_VALUE_ARRAY;
        v.v.array = &array;
        return v;
    }
};
inline ws_value v_date(int32_t days)
{
    ws_value v{};
    v.kind = WS_VALUE_DATE;
    v.v.i32 = days;
    return v;
}
inline ws_value v_uuid(const unsigned char (&bytes)[16])
{
    ws_value v{};
    v.kind = WS_VALUE_UUID;
    std::memcpy(v.v.uuid, bytes, 16);
    return v;
}
inline ws_value v_time(int64_t us, const std::string &text)
{
    ws_value v = v_text_kind(WS_VALUE_TIME, text);
    v.v.i64 = us;
    return v;
}
inline ws_value v_timetz(int64_t us, int32_t zone_west_s, const std::string &text)
{
    ws_value v = v_text_kind(WS_VALUE_TIMETZ, text);
    v.v.timetz.time_us = us;
    v.v.timetz.zone_s = zone_west_s;
    return v;
}
inline ws_value v_interval(int32_t months, int32_t days, int64_t time_us, const std::string &text)
{
    ws_value v = v_text_kind(WS_VALUE_INTERVAL, text);
    v.v.interval.months = months;
    v.v.interval.days = days;
    v.v.interval.time_us = time_us;
    return v;
}

/* PostgreSQL builtin type OIDs used by the tests. */
enum : uint32_t {
    BOOLOID = 16,
    BYTEAOID = 17,
    INT8OID = 20,
    INT2OID = 21,
    INT4OID = 23,
    TEXTOID = 25,
    OIDOID = 26,
    JSONOID = 114,
    FLOAT4OID = 700,
    FLOAT8OID = 701,
    BPCHAROID = 1042,
    VARCHAROID = 1043,
    DATEOID = 1082,
    TIMEOID = 1083,
    TIMESTAMPOID = 1114,
    TIMESTAMPTZOID = 1184,
    INTERVALOID = 1186,
    TIMETZOID = 1266,
    NUMERICOID = 1700,
    UUIDOID = 2950,
    JSONBOID = 3802,
    INT4ARRAYOID = 1007,
    TEXTARRAYOID = 1009,
};

/* numeric(p,s) typmod as PostgreSQL stores it */
constexpr int32_t numeric_typmod(int precision, int scale)
{
    return ((precision << 16) | (scale & 0x7FF)) + 4;
}

struct ColumnSpec {
    const char *name;
    uint32_t type_oid;
    ws_value value;
    bool is_key = false;
    int32_t typmod = -1;
    bool not_null = false;
    uint32_t elem_type_oid = 0;
    const char *type_name = "";
    /* what a table description tells beyond the row (ws_table_desc) */
    const char *default_expr = nullptr;
    ws_value default_value = {};
    const char *const *enum_labels = nullptr;
    int nenum_labels = 0;
    uint32_t base_type_oid = 0;
};

inline ws_column make_column(const ColumnSpec &spec)
{
    ws_column c{};
    c.name = spec.name;
    c.type_name = spec.type_name;
    c.type_oid = spec.type_oid;
    c.typmod = spec.typmod;
    c.elem_type_oid = spec.elem_type_oid;
    c.is_key = spec.is_key;
    c.not_null = spec.not_null;
    c.value = spec.value;
    c.default_expr = spec.default_expr;
    c.default_value = spec.default_value;
    c.enum_labels = spec.enum_labels;
    c.nenum_labels = spec.nenum_labels;
    c.base_type_oid = spec.base_type_oid;
    return c;
}

/* Owns the arrays a ws_change points to. */
class ChangeBuilder
{
  public:
    explicit ChangeBuilder(ws_op op)
    {
        change_.op = op;
        change_.source.database = "shop";
        change_.source.schema = "public";
        change_.source.table = "orders";
        change_.source.xid = 571;
        change_.source.commit_lsn = 53195832;
        change_.source.change_lsn = 53195829;
        change_.source.commit_time_us = 1700000000123456;
    }

    ChangeBuilder &after(std::vector<ColumnSpec> columns)
    {
        change_.after = add_row(columns);
        return *this;
    }
    ChangeBuilder &before(std::vector<ColumnSpec> columns)
    {
        change_.before = add_row(columns);
        return *this;
    }
    ChangeBuilder &table(const char *schema, const char *table)
    {
        change_.source.schema = schema;
        change_.source.table = table;
        return *this;
    }
    /*
     * Gives the change a table handle of enc, as the shim's relation cache does: the
     * table described by the new row's columns (else the old row's), the old row's
     * columns as its old tuple. Call after after() and before().
     */
    ChangeBuilder &with_table(ws_encoder *enc)
    {
        ws_table_desc desc{};
        desc.schema = change_.source.schema;
        desc.table = change_.source.table;
        desc.columns = change_.after != nullptr ? change_.after : change_.before;
        desc.before = change_.before;
        ws_error err{};
        table_.reset(ws_table_create(enc, &desc, &err));
        EXPECT_NE(table_, nullptr) << err.message;
        change_.table = table_.get();
        return *this;
    }
    ws_change &change()
    {
        return change_;
    }
    const ws_change *get() const
    {
        return &change_;
    }

  private:
    const ws_row *add_row(const std::vector<ColumnSpec> &specs)
    {
        columns_.emplace_back();
        for (const ColumnSpec &spec : specs)
            columns_.back().push_back(make_column(spec));
        rows_.emplace_back();
        rows_.back().columns = columns_.back().data();
        rows_.back().ncolumns = static_cast<int>(columns_.back().size());
        return &rows_.back();
    }

    struct TableDeleter {
        void operator()(ws_table *t) const
        {
            ws_table_destroy(t);
        }
    };

    ws_change change_{};
    std::unique_ptr<ws_table, TableDeleter> table_;
    std::deque<std::vector<ws_column>> columns_;
    std::deque<ws_row> rows_;
};

/* ---------------------------------------------------------------- C API */

struct OptionsDeleter {
    void operator()(ws_options *o) const
    {
        ws_options_destroy(o);
    }
};
using OptionsPtr = std::unique_ptr<ws_options, OptionsDeleter>;

struct EncoderDeleter {
    void operator()(ws_encoder *e) const
    {
        ws_encoder_destroy(e);
    }
};
using EncoderPtr = std::unique_ptr<ws_encoder, EncoderDeleter>;

/* Options from name/value pairs; fails the test on any error. */
inline OptionsPtr make_options(const std::vector<std::pair<const char *, const char *>> &pairs)
{
    ws_error err{};
    OptionsPtr opts(ws_options_create(&err));
    EXPECT_NE(opts, nullptr) << err.message;
    for (const auto &p : pairs)
        EXPECT_EQ(ws_options_set(opts.get(), p.first, p.second, &err), WS_OK)
            << p.first << "=" << (p.second ? p.second : "(null)") << ": " << err.message;
    return opts;
}

/* The whole error of setting one option on fresh options (kind WS_ERR_NONE when it succeeds). */
inline ws_error option_failure(const char *name, const char *value)
{
    ws_error err{};
    OptionsPtr opts(ws_options_create(&err));
    if (ws_options_set(opts.get(), name, value, &err) == WS_OK)
        err = ws_error{};
    return err;
}

/* The error message of setting one option on fresh options ("" when it succeeds). */
inline std::string option_error(const char *name, const char *value)
{
    return option_failure(name, value).message;
}

/*
 * Option name/value pairs for a TestEncoder. A type of its own so that
 * TestEncoder enc({{"format", "json"}}) cannot also read as a copy of a
 * TestEncoder built from a vector's (first, last) iterator pair.
 */
struct Settings {
    std::vector<std::pair<const char *, const char *>> pairs;
    Settings() = default;
    Settings(std::initializer_list<std::pair<const char *, const char *>> list) : pairs(list) {}
    Settings(std::vector<std::pair<const char *, const char *>> list) : pairs(std::move(list)) {}
};

class TestEncoder
{
  public:
    explicit TestEncoder(const Settings &settings = {})
    {
        OptionsPtr opts = make_options(settings.pairs);
        ws_error err{};
        encoder_.reset(ws_encoder_create(opts.get(), "shop", &err));
        EXPECT_NE(encoder_, nullptr) << err.message;
    }

    /* The event and its key, from one ws_encode. */
    ws_encoded encode(const ws_change *change)
    {
        ws_encoded out{};
        ws_error err{};
        ws_status status = ws_encode(encoder_.get(), change, true, &out, &err);
        EXPECT_EQ(status, WS_OK) << err.message;
        return status == WS_OK ? out : ws_encoded{};
    }

    /* The first record's event and key (the only record of most changes). */
    std::string event(const ws_change *change)
    {
        ws_encoded out = encode(change);
        if (out.nrecords < 1)
            return std::string();
        return std::string(reinterpret_cast<const char *>(out.records[0].value),
                           out.records[0].valuelen);
    }

    std::string key(const ws_change *change)
    {
        ws_encoded out = encode(change);
        if (out.nrecords < 1)
            return std::string();
        return std::string(reinterpret_cast<const char *>(out.records[0].key),
                           out.records[0].keylen);
    }

    /* Every record of a change, copied. */
    struct Record {
        std::string key;
        bool tombstone = false;
        std::string value;
        std::string header; /* name=value, empty when none */
    };
    std::vector<Record> records(const ws_change *change)
    {
        ws_encoded out = encode(change);
        std::vector<Record> all;
        for (int i = 0; i < out.nrecords; i++) {
            const ws_record &r = out.records[i];
            Record copy;
            copy.key.assign(reinterpret_cast<const char *>(r.key), r.keylen);
            copy.tombstone = r.value == nullptr;
            if (r.value != nullptr)
                copy.value.assign(reinterpret_cast<const char *>(r.value), r.valuelen);
            if (r.header != nullptr)
                copy.header =
                    std::string(r.header) + "=" +
                    std::string(reinterpret_cast<const char *>(r.header_value), r.header_valuelen);
            all.push_back(std::move(copy));
        }
        return all;
    }

    /* The error of encoding a change that must fail. */
    ws_error failure(const ws_change *change)
    {
        ws_encoded out{};
        ws_error err{};
        EXPECT_EQ(ws_encode(encoder_.get(), change, true, &out, &err), WS_ERROR);
        return err;
    }

    /* The error message of encoding a change that must fail. */
    std::string event_error(const ws_change *change)
    {
        return failure(change).message;
    }

    ws_encoder *get()
    {
        return encoder_.get();
    }

  private:
    EncoderPtr encoder_;
};

} // namespace walship_test

#endif
