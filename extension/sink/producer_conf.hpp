/*
 * producer_conf.hpp: a librdkafka producer configuration, set one property at a time
 * through walship's policy (properties.hpp) and then librdkafka's own parser, with
 * messages that name the property and never show a secret.
 *
 * It holds an rd_kafka_conf_t, not a producer: checking a property connects nowhere.
 */
#ifndef WALSHIP_SINK_PRODUCER_CONF_HPP
#define WALSHIP_SINK_PRODUCER_CONF_HPP

#include "properties.hpp"

#include <librdkafka/rdkafka.h>

#include <memory>
#include <string>

namespace walship
{

class ProducerConf
{
  public:
    /* Messages are scrubbed of scrubber's secrets; it must outlive this object. */
    explicit ProducerConf(const SecretScrubber &scrubber);

    /* Sets one property as librdkafka parses it (no policy: walship's own settings). */
    bool set(const std::string &name, const char *value, std::string &why, bool secret = false);
    /* A stream's property: a name and a value, the policy, then set(). */
    bool check(const char *name, const char *value, bool secret, std::string &why);
    /* The value librdkafka holds for name; false when it holds none. */
    bool get(const char *name, std::string &value) const;

    rd_kafka_conf_t *get() const
    {
        return conf_.get();
    }
    /* rd_kafka_new took the configuration: it is no longer ours to destroy. */
    void release()
    {
        (void)conf_.release();
    }

  private:
    struct Deleter {
        void operator()(rd_kafka_conf_t *conf) const
        {
            rd_kafka_conf_destroy(conf);
        }
    };
    std::unique_ptr<rd_kafka_conf_t, Deleter> conf_;
    const SecretScrubber &scrubber_;
};

} // namespace walship

#endif
