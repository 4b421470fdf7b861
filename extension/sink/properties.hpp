/*
 * properties.hpp: what a stream's producer starts from and which properties it may set,
 * and which values are secrets and how they are kept out of every text.
 *
 * Pure functions of names and values: no librdkafka handle or configuration object, so
 * the unit tests check every rule without a broker (tests/unit/test_sink_properties.cpp).
 * librdkafka's own parser of names and values comes after these, in producer_conf.hpp.
 */
#ifndef WALSHIP_SINK_PROPERTIES_HPP
#define WALSHIP_SINK_PROPERTIES_HPP

#include <string>
#include <string_view>
#include <vector>

namespace walship
{

/*
 * The command librdkafka runs through system() to refresh Kerberos tickets (GSSAPI),
 * substituting %{property} values into it. The stream may not set it; walship sets this
 * one, which only ever substitutes the principal and the keytab, single-quoted, and
 * property_allowed admits only plain names and paths for those two.
 */
inline constexpr const char *kKinitCommand =
    "kinit -R -t '%{sasl.kerberos.keytab}' -k '%{sasl.kerberos.principal}' || kinit -t "
    "'%{sasl.kerberos.keytab}' -k '%{sasl.kerberos.principal}'";

/*
 * Producer settings walship starts from. Every one can be overridden by the stream's
 * properties, except those the property policy (property_allowed) refuses.
 */
struct DefaultProperty {
    const char *name;
    const char *value;
};
inline constexpr DefaultProperty kDefaultProperties[] = {
    {"client.id", "walship"},
    /* Idempotence implies acks=all, max.in.flight<=5 and retries without end. */
    {"enable.idempotence", "true"},
    /* Java clients' partitioner: the same key lands in the same partition whichever
     * client wrote it; events without a key spread at random. */
    {"partitioner", "murmur2_random"},
    /* Infinite: a Kafka outage never fails an event; the worker waits (backpressure)
     * and catches up. A bounded value is allowed: failed events restart the stream. */
    {"message.timeout.ms", "0"},
    /* Throughput: small batching delay, large batches, no compression by default. */
    {"linger.ms", "5"},
    {"batch.num.messages", "10000"},
    {"batch.size", "1000000"},
    {"compression.type", "none"},
    /* Largest event (key, value, headers, framing): 32 MiB, against librdkafka's and
     * Kafka's 1 MB, so that large (TOAST-ed) rows flow. A larger message goes out alone
     * in its batch; batch.size still bounds batches of small ones. It must stay below
     * queue.buffering.max.kbytes, or such an event would never fit in the queue, and
     * below the broker's socket.request.max.bytes (100 MiB). Topics walship creates get
     * it as their max.message.bytes. */
    {"message.max.bytes", "33554432"},
    /* Bounded queue (librdkafka's default is 1 GiB): a full queue is backpressure on the
     * worker, not memory growth in a PostgreSQL process. */
    {"queue.buffering.max.messages", "100000"},
    {"queue.buffering.max.kbytes", "65536"},
    {"sasl.kerberos.kinit.cmd", kKinitCommand},
};

/* "text" with its double quotes, the way messages name properties, values and topics. */
std::string quoted(const std::string &text);

/* True for properties whose values must never be shown (by name, ignoring case). */
bool is_secret_property(const std::string &name);

/*
 * The two values walship's kinit command substitutes reach a shell: only characters
 * that mean nothing to a shell, and no leading '-' (an option to kinit). Kerberos
 * principals of the form primary/instance@REALM and, with path, absolute paths fit.
 */
bool is_plain_kerberos_value(const char *value, bool path);

/*
 * Refuses what would break walship's guarantees, or the server it runs in: false, and
 * why (naming the property; never showing the value when secret). Everything else goes
 * to librdkafka, which validates names and values itself.
 */
bool property_allowed(const std::string &name, const char *value, bool secret, std::string &why);

/*
 * Replaces every secret value the sink was given with "***" in text librdkafka produced
 * (errors, logs): librdkafka quotes values in some messages, and a message that reaches
 * the server log or a status view must never carry a password.
 */
class SecretScrubber
{
  public:
    /* NULL and empty values are no secrets. */
    void add(const char *value);
    /* Longest secret first: one that contains another is replaced whole. */
    std::string scrub(std::string text) const;

  private:
    std::vector<std::string> secrets_;
};

} // namespace walship

#endif
