/*
 * position_record.cpp: the exactly-once position record's value (position_record.hpp).
 */
#include "core_error.hpp" /* first: the guard that no PostgreSQL header got here */

#include "position_record.hpp"

#include "json_out.hpp"
#include "watermark.hpp"

#include <cerrno>
#include <cstdlib>

namespace walship
{

std::string position_value(const PositionRecord &record)
{
    std::string out = "{\"stream\":";
    json::append_string(out, record.stream);
    out += ",\"database\":";
    json::append_string(out, record.database);
    /* as text: a 64-bit identifier is more than a JSON number holds in many readers */
    out += ",\"system_identifier\":\"" + std::to_string(record.system_identifier) + "\"";
    out += ",\"timeline\":" + std::to_string(record.timeline);
    out += ",\"commit_lsn\":\"" + format_lsn(record.commit_lsn) + "\"";
    out += ",\"lsn\":" + std::to_string(record.commit_lsn);
    out += ",\"events\":" + std::to_string(record.events);
    out += ",\"time_us\":" + std::to_string(record.time_us);
    out += "}";
    return out;
}

namespace
{

/* A reader of the flat JSON objects position_value writes: string and number members. */
class FlatObject
{
  public:
    explicit FlatObject(std::string_view text) : text_(text) {}

    /* The next member; false at the end or (with why) when the text is not such an object. */
    bool next(std::string &key, std::string &value, bool &is_string, std::string &why)
    {
        skip_space();
        if (!started_) {
            if (!take('{')) {
                why = "not a JSON object";
                return false;
            }
            started_ = true;
            skip_space();
            if (take('}'))
                return false;
        } else if (take('}')) {
            return false;
        } else if (!take(',')) {
            why = "expected ',' or '}'";
            return false;
        }
        skip_space();
        if (!string(key)) {
            why = "expected a member name";
            return false;
        }
        skip_space();
        if (!take(':')) {
            why = "expected ':'";
            return false;
        }
        skip_space();
        is_string = pos_ < text_.size() && text_[pos_] == '"';
        if (is_string ? !string(value) : !number(value)) {
            why = "member \"" + key + "\" is neither a string nor a number";
            return false;
        }
        return true;
    }

  private:
    void skip_space()
    {
        while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\n' ||
                                       text_[pos_] == '\t' || text_[pos_] == '\r'))
            ++pos_;
    }
    bool take(char c)
    {
        if (pos_ < text_.size() && text_[pos_] == c) {
            ++pos_;
            return true;
        }
        return false;
    }
    /* Strings as position_value writes them: escapes of '"' and '\\' and \u00XX. */
    bool string(std::string &out)
    {
        out.clear();
        if (!take('"'))
            return false;
        while (pos_ < text_.size()) {
            char c = text_[pos_++];
            if (c == '"')
                return true;
            if (c != '\\') {
                out += c;
                continue;
            }
            if (pos_ >= text_.size())
                return false;
            char e = text_[pos_++];
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
                if (pos_ + 4 > text_.size())
                    return false;
                unsigned code = static_cast<unsigned>(
                    std::strtoul(std::string(text_.substr(pos_, 4)).c_str(), nullptr, 16));
                pos_ += 4;
                /* names are the stream's and the database's: the escapes of control
                 * characters; anything else is kept as UTF-8 */
                if (code < 0x80) {
                    out += static_cast<char>(code);
                } else if (code < 0x800) {
                    out += static_cast<char>(0xC0 | (code >> 6));
                    out += static_cast<char>(0x80 | (code & 0x3F));
                } else {
                    out += static_cast<char>(0xE0 | (code >> 12));
                    out += static_cast<char>(0x80 | ((code >> 6) & 0x3F));
                    out += static_cast<char>(0x80 | (code & 0x3F));
                }
                break;
            }
            default:
                return false;
            }
        }
        return false;
    }
    bool number(std::string &out)
    {
        size_t start = pos_;
        if (pos_ < text_.size() && text_[pos_] == '-')
            ++pos_;
        while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9')
            ++pos_;
        out = std::string(text_.substr(start, pos_ - start));
        return !out.empty() && out != "-";
    }

    std::string_view text_;
    size_t pos_ = 0;
    bool started_ = false;
};

bool unsigned_value(const std::string &text, uint64_t &out)
{
    if (text.empty() || text[0] < '0' || text[0] > '9')
        return false;
    errno = 0;
    char *end = nullptr;
    out = std::strtoull(text.c_str(), &end, 10);
    return errno == 0 && *end == '\0';
}

} // namespace

bool parse_position_value(std::string_view value, PositionRecord &out, std::string &why)
{
    FlatObject object(value);
    std::string key;
    std::string text;
    bool is_string = false;
    bool has_lsn = false;
    bool has_timeline = false;
    bool has_system = false;
    out = PositionRecord{};
    while (object.next(key, text, is_string, why)) {
        uint64_t number = 0;
        if (key == "stream" && is_string) {
            out.stream = text;
        } else if (key == "database" && is_string) {
            out.database = text;
        } else if (key == "system_identifier" && is_string && unsigned_value(text, number)) {
            out.system_identifier = number;
            has_system = true;
        } else if (key == "timeline" && !is_string && unsigned_value(text, number) &&
                   number <= UINT32_MAX) {
            out.timeline = static_cast<uint32_t>(number);
            has_timeline = true;
        } else if (key == "lsn" && !is_string && unsigned_value(text, number)) {
            out.commit_lsn = number;
            has_lsn = true;
        } else if (key == "events" && !is_string && unsigned_value(text, number)) {
            out.events = number;
        } else if (key == "time_us" && !is_string) {
            out.time_us = std::strtoll(text.c_str(), nullptr, 10);
        }
        /* commit_lsn is lsn as text; members of later versions are skipped */
    }
    if (!why.empty())
        return false;
    if (!has_lsn || !has_timeline || !has_system) {
        why = "it lacks \"lsn\", \"timeline\" or \"system_identifier\"";
        return false;
    }
    return true;
}

} // namespace walship
