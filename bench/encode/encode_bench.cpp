/*
 * encode_bench.cpp: the C++ core's own cost per event, without PostgreSQL or Kafka.
 *
 * Encodes one UPDATE of the decode benchmark's table (bigint key, integer, text,
 * numeric(14,4), timestamptz, boolean; the old tuple is the key) through walship_core.h,
 * as the plugin does: one table handle, one ws_encode per event giving event and key.
 * Prints nanoseconds per event for protobuf, json (with schemas) and json without
 * schemas, the best of several rounds.
 *
 *   build/walship_encode_bench [events per round, default 1000000] [rounds, default 5]
 */
#include "walship_core.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

namespace
{

ws_column column(const char *name, const char *type_name, uint32_t oid, bool key, int32_t typmod,
                 ws_value value)
{
    ws_column c{};
    c.name = name;
    c.type_name = type_name;
    c.type_oid = oid;
    c.typmod = typmod;
    c.is_key = key;
    c.not_null = true;
    c.value = value;
    return c;
}

ws_value text_value(ws_value_kind kind, const std::string &text)
{
    ws_value v{};
    v.kind = kind;
    v.data = text.data();
    v.len = text.size();
    return v;
}

[[noreturn]] void fail(const char *what, const ws_error &err)
{
    std::fprintf(stderr, "encode_bench: %s: %s\n", what, err.message);
    std::exit(1);
}

double ns_per_event(const std::vector<std::pair<const char *, const char *>> &settings, long events,
                    int rounds, size_t *bytes)
{
    ws_error err{};
    ws_options *opts = ws_options_create(&err);
    if (opts == nullptr)
        fail("options", err);
    for (const auto &s : settings)
        if (ws_options_set(opts, s.first, s.second, &err) != WS_OK)
            fail("options", err);
    ws_encoder *enc = ws_encoder_create(opts, "shop", &err);
    if (enc == nullptr)
        fail("encoder", err);

    static const std::string label = "item-0b8e5c5a7f3c4e2e9d1a6b3c8f7e2d1a", price = "15241.1111";
    ws_value id{}, qty{}, ts{}, active{};
    id.kind = qty.kind = WS_VALUE_INT64;
    id.v.i64 = 123456;
    qty.v.i64 = 42;
    ts.kind = WS_VALUE_TIMESTAMP;
    ts.v.i64 = 1704067200000000 + 123456000000;
    active.kind = WS_VALUE_BOOL;
    active.v.b = true;
    ws_column after[] = {
        column("id", "bigint", 20, true, -1, id),
        column("qty", "integer", 23, false, -1, qty),
        column("label", "text", 25, false, -1, text_value(WS_VALUE_TEXT, label)),
        column("price", "numeric(14,4)", 1700, false, ((14 << 16) | 4) + 4,
               text_value(WS_VALUE_NUMERIC, price)),
        column("updated_at", "timestamp with time zone", 1184, false, -1, ts),
        column("active", "boolean", 16, false, -1, active),
    };
    ws_column before[] = {after[0]};
    ws_row after_row{after, 6};
    ws_row before_row{before, 1};
    ws_table_desc desc{"public", "bench_t", "shop.public.bench_t", &after_row, &before_row};
    ws_table *table = ws_table_create(enc, &desc, &err);
    if (table == nullptr)
        fail("table", err);

    ws_change change{};
    change.op = WS_OP_UPDATE;
    change.table = table;
    change.source.database = "shop";
    change.source.schema = "public";
    change.source.table = "bench_t";
    change.source.xid = 771;
    change.source.commit_lsn = 0x1A2B3C4D;
    change.source.commit_time_us = 1764600000000000;
    change.after = &after_row;
    change.before = &before_row;

    double best = 1e300;
    ws_encoded out{};
    for (int r = 0; r < rounds; r++) {
        auto start = std::chrono::steady_clock::now();
        for (long i = 0; i < events; i++) {
            change.source.change_lsn = 0x1A2B0000 + static_cast<uint64_t>(i);
            if (ws_encode(enc, &change, true, &out, &err) != WS_OK)
                fail("encode", err);
        }
        double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        best = std::min(best, s);
    }
    *bytes = out.records[0].valuelen + out.records[0].keylen;
    ws_table_destroy(table);
    ws_encoder_destroy(enc);
    ws_options_destroy(opts);
    return best * 1e9 / static_cast<double>(events);
}

} // namespace

int main(int argc, char **argv)
{
    long events = argc > 1 ? std::atol(argv[1]) : 1000000;
    int rounds = argc > 2 ? std::atoi(argv[2]) : 5;
    const char *only = argc > 3 ? argv[3] : nullptr; /* a format's name: that one alone */
    if (events < 1 || rounds < 1) {
        std::fprintf(stderr, "usage: walship_encode_bench [events per round] [rounds] [format]\n");
        return 2;
    }
    const std::pair<const char *, std::vector<std::pair<const char *, const char *>>> formats[] = {
        {"protobuf", {}},
        {"json (schemas)", {{"format", "json"}}},
        {"json (no schemas)", {{"format", "json"}, {"json-schema", "false"}}},
    };
    std::printf("%-18s %12s %14s\n", "format", "ns/event", "bytes/event");
    for (const auto &f : formats) {
        if (only != nullptr && std::strcmp(only, f.first) != 0)
            continue;
        size_t bytes = 0;
        double ns = ns_per_event(f.second, events, rounds, &bytes);
        std::printf("%-18s %12.1f %14zu\n", f.first, ns, bytes);
    }
    return 0;
}
