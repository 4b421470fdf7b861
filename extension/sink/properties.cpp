/*
 * properties.cpp: the property policy and the secrets (see properties.hpp).
 */
#include "core_error.hpp" /* first: the guard that no PostgreSQL header got here */

#include "properties.hpp"

#include <algorithm>
#include <cctype>
#include <climits>
#include <cstdlib>
#include <cstring>

namespace walship
{

namespace
{

bool contains_ignoring_case(const std::string &text, const char *part)
{
    std::string lower(text);
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return lower.find(part) != std::string::npos;
}

bool equals_ignoring_case(const char *a, const char *b)
{
    for (; *a != '\0' && *b != '\0'; ++a, ++b) {
        if (std::tolower(static_cast<unsigned char>(*a)) !=
            std::tolower(static_cast<unsigned char>(*b)))
            return false;
    }
    return *a == *b;
}

/* librdkafka's spelling of a boolean false. */
bool is_false(const char *value)
{
    return equals_ignoring_case(value, "false") || equals_ignoring_case(value, "f") ||
           std::strcmp(value, "0") == 0;
}

bool parse_int(const char *value, long *out)
{
    char *end = nullptr;
    long parsed = std::strtol(value, &end, 0);
    if (end == value)
        return false;
    while (*end == ' ')
        ++end;
    if (*end != '\0')
        return false;
    *out = parsed;
    return true;
}

/* A whole number from min to max, as librdkafka reads one (strtol's bases). */
bool whole_number_in(const char *value, long min, long max)
{
    long number = 0;
    return parse_int(value, &number) && number >= min && number <= max;
}

} // namespace

std::string quoted(const std::string &text)
{
    return "\"" + text + "\"";
}

bool is_secret_property(const std::string &name)
{
    /* Java-style key.serializer / key.deserializer name a class, not a key. */
    if (contains_ignoring_case(name.substr(0, 4), "key."))
        return false;
    static const char *const kSecretParts[] = {
        "password", "secret", "key", "token", "credential", "sasl.oauthbearer.config",
    };
    for (const char *part : kSecretParts) {
        if (contains_ignoring_case(name, part))
            return true;
    }
    return false;
}

bool is_plain_kerberos_value(const char *value, bool path)
{
    if (path ? value[0] != '/' : value[0] == '-' || value[0] == '\0')
        return false;
    for (const char *p = value; *p != '\0'; ++p) {
        unsigned char c = static_cast<unsigned char>(*p);
        if (!std::isalnum(c) && std::strchr("._-/@+", c) == nullptr)
            return false;
    }
    return std::strlen(value) <= 4096;
}

/*
 * What could reach a shell, load code, write files or send signals in the server, from
 * the properties of the linked librdkafka (2.0): sasl.kerberos.kinit.cmd (a shell
 * command) and the values it substitutes, plugin.library.paths and ssl.engine.location
 * (libraries), ssl.providers (OpenSSL modules, loaded by name from OpenSSL's own module
 * directory unless given as a path), internal.termination.signal (a signal sent to the
 * server's threads), and the legacy consumer's offset.store.* (a file it writes). The
 * remaining file paths (ssl.*.location, sasl.kerberos.keytab) are only read, as TLS
 * material or by kinit; docs/security.md says who may set them.
 */
bool property_allowed(const std::string &name, const char *value, bool secret, std::string &why)
{
    const std::string prop = quoted(name);
    /* a value read from a file is never quoted back */
    const std::string shown = secret ? std::string("the value given") : quoted(value);
    if (name == "sasl.kerberos.principal" && !is_plain_kerberos_value(value, false)) {
        why = "Kafka property " + prop +
              " must be a plain Kerberos principal (letters, digits and . _ - / @ +, not "
              "starting with -): walship passes it to kinit through a shell";
        return false;
    }
    if (name == "sasl.kerberos.keytab" && !is_plain_kerberos_value(value, true)) {
        why = "Kafka property " + prop +
              " must be an absolute path of letters, digits and . _ - / @ +: walship passes "
              "it to kinit through a shell";
        return false;
    }
    if (name == "enable.idempotence" && is_false(value)) {
        why = "Kafka property " + prop +
              " cannot be false: walship relies on the idempotent producer to deliver "
              "every event once and in order";
        return false;
    }
    if (name == "acks" || name == "request.required.acks") {
        long acks = 0;
        bool all = equals_ignoring_case(value, "all") || (parse_int(value, &acks) && acks == -1);
        if (!all) {
            why = "Kafka property " + prop + " must be \"all\" (or -1), not " + shown +
                  ": walship confirms a transaction to PostgreSQL only once every in-sync "
                  "replica holds it";
            return false;
        }
        return true;
    }
    if (name == "partitioner") {
        if (std::strcmp(value, "murmur2_random") != 0 && std::strcmp(value, "murmur2") != 0) {
            why = "Kafka property " + prop + " must be \"murmur2_random\" or \"murmur2\", not " +
                  shown +
                  ": walship partitions like Java clients do, so that all changes of a row "
                  "land in one partition whoever else writes the topic";
            return false;
        }
        return true;
    }
    if ((name == "max.in.flight" || name == "max.in.flight.requests.per.connection") &&
        !whole_number_in(value, LONG_MIN, 5)) {
        why = "Kafka property " + prop +
              " must be a whole number from 1 to 5: the idempotent producer keeps order only "
              "up to 5 requests in flight";
        return false;
    }
    if ((name == "retries" || name == "message.send.max.retries") &&
        !whole_number_in(value, 1, LONG_MAX)) {
        why = "Kafka property " + prop +
              " must be a whole number, at least 1: the idempotent producer needs retries";
        return false;
    }
    if (name == "queuing.strategy" && std::strcmp(value, "fifo") != 0) {
        why = "Kafka property " + prop + " must be \"fifo\": events must keep their order";
        return false;
    }
    if (name == "delivery.report.only.error" && !is_false(value)) {
        why = "Kafka property " + prop +
              " cannot be true: the LSN watermark needs a delivery report for every event";
        return false;
    }
    if (name == "enabled_events" || name == "log.queue") {
        why = "Kafka property " + prop +
              " is managed by walship: delivery reports and logs must reach the stream worker";
        return false;
    }
    if (name == "transactional.id" || name == "transaction.timeout.ms") {
        why = "Kafka property " + prop +
              " can only be set with the stream option delivery = exactly_once, whose Kafka "
              "transactions walship runs itself";
        return false;
    }
    if (name == "plugin.library.paths" || name == "ssl.engine.location" ||
        name == "sasl.kerberos.kinit.cmd" || name == "internal.termination.signal") {
        why = "Kafka property " + prop +
              " cannot be set through walship: it would load code, run a command or send "
              "signals inside the PostgreSQL server";
        return false;
    }
    if (name == "ssl.providers" && std::strchr(value, '/') != nullptr) {
        why = "Kafka property " + prop +
              " must name OpenSSL providers, not paths: loading a file would run code "
              "inside the PostgreSQL server";
        return false;
    }
    if (name.compare(0, 13, "offset.store.") == 0) {
        why = "Kafka property " + prop +
              " is a consumer property (the legacy consumer's offset file): walship only "
              "produces, and writes no files through librdkafka";
        return false;
    }
    if (name.compare(0, 5, "test.") == 0) {
        why = "Kafka property " + prop + " is for librdkafka's own tests";
        return false;
    }
    return true;
}

void SecretScrubber::add(const char *value)
{
    if (value == nullptr || value[0] == '\0')
        return;
    secrets_.emplace_back(value);
    /* longest first: a secret that contains another is replaced whole */
    std::stable_sort(
        secrets_.begin(), secrets_.end(),
        [](const std::string &a, const std::string &b) { return a.size() > b.size(); });
}

std::string SecretScrubber::scrub(std::string text) const
{
    for (const std::string &secret : secrets_) {
        size_t at = 0;
        while ((at = text.find(secret, at)) != std::string::npos) {
            text.replace(at, secret.size(), "***");
            at += 3;
        }
    }
    return text;
}

} // namespace walship
