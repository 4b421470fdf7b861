/*
 * producer_conf.cpp: properties through librdkafka's parser (see producer_conf.hpp).
 */
#include "core_error.hpp" /* first: the guard that no PostgreSQL header got here */

#include "producer_conf.hpp"

#include <cctype>
#include <cstdlib>
#include <new>

namespace walship
{

namespace
{

/*
 * librdkafka reads an integer property with strtol and ignores what follows the digits:
 * "6x" is 6, and a max.in.flight of "6x" passes walship's check of it, then breaks the
 * producer. So a value that starts like a number must be one, when librdkafka keeps an
 * integer for it.
 */
bool integer_value_with_junk(rd_kafka_conf_t *conf, const std::string &name, const char *value)
{
    if (!(std::isdigit(static_cast<unsigned char>(value[0])) || value[0] == '-'))
        return false;
    char kept[64];
    size_t size = sizeof(kept);
    if (rd_kafka_conf_get(conf, name.c_str(), kept, &size) != RD_KAFKA_CONF_OK)
        return false;
    const char *p = kept[0] == '-' ? kept + 1 : kept;
    if (*p == '\0')
        return false;
    for (; *p != '\0'; ++p)
        if (!std::isdigit(static_cast<unsigned char>(*p)))
            return false; /* not an integer property */
    char *end = nullptr;
    (void)std::strtoll(value, &end, 10);
    while (*end == ' ')
        ++end;
    return *end != '\0';
}

} // namespace

ProducerConf::ProducerConf(const SecretScrubber &scrubber)
    : conf_(rd_kafka_conf_new()), scrubber_(scrubber)
{
    if (!conf_)
        throw std::bad_alloc();
}

bool ProducerConf::set(const std::string &name, const char *value, std::string &why, bool secret)
{
    char errstr[512];
    rd_kafka_conf_res_t res =
        rd_kafka_conf_set(conf_.get(), name.c_str(), value, errstr, sizeof(errstr));
    if (res == RD_KAFKA_CONF_OK && !integer_value_with_junk(conf_.get(), name, value)) {
        return true;
    } else if (res == RD_KAFKA_CONF_OK) {
        why = "invalid value for Kafka property " + quoted(name) +
              (secret || is_secret_property(name) ? std::string() : " " + quoted(value)) +
              ": expected a whole number";
        return false;
    }
    if (res == RD_KAFKA_CONF_UNKNOWN) {
        why = "unknown Kafka property " + quoted(name) +
              ": see librdkafka's CONFIGURATION.md for the properties a producer accepts";
    } else if (secret || is_secret_property(name)) {
        why = "invalid value for Kafka property " + quoted(name) +
              " (the value is not shown: the property holds a secret)";
    } else {
        why = "invalid value for Kafka property " + quoted(name) + ": " + scrubber_.scrub(errstr);
    }
    return false;
}

bool ProducerConf::check(const char *name, const char *value, bool secret, std::string &why)
{
    if (name == nullptr || name[0] == '\0') {
        why = "Kafka property without a name";
        return false;
    }
    if (value == nullptr) {
        why = "Kafka property " + quoted(name) + " has no value";
        return false;
    }
    if (property_allowed(name, value, secret, why) && set(name, value, why, secret))
        return true;
    /* whatever the message quotes, no secret of the stream survives in it */
    why = scrubber_.scrub(why);
    return false;
}

bool ProducerConf::get(const char *name, std::string &value) const
{
    char kept[512];
    size_t size = sizeof(kept);
    if (rd_kafka_conf_get(conf_.get(), name, kept, &size) != RD_KAFKA_CONF_OK)
        return false;
    value = kept;
    return true;
}

} // namespace walship
