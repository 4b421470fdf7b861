/*
 * sink_internal.hpp: what the sink's unit tests may reach beyond walship_sink.h.
 *
 * Only tests include this. The stream worker goes through walship_sink.h alone.
 */
#ifndef WALSHIP_SINK_INTERNAL_HPP
#define WALSHIP_SINK_INTERNAL_HPP

#include "walship_sink.h"

#include <librdkafka/rdkafka.h>

namespace walship
{

/* The sink's producer handle, e.g. for rd_kafka_test_fatal_error(). */
rd_kafka_t *sink_kafka_handle(ws_sink *sink);

/* Shortens topic creation's request timeout and its budget (librdkafka's mock cluster
 * names a controller it does not have, so creation there always times out). */
void sink_set_topic_creation_limits(ws_sink *sink, int request_timeout_ms, int budget_ms);

} // namespace walship

#endif /* WALSHIP_SINK_INTERNAL_HPP */
