/*
 * test_core_allocations.cpp: the encoders' hot path does not touch the heap.
 *
 * Once an encoder has seen a table's rows, encoding more rows of the same shape
 * must not allocate: the output buffers, the protobuf message and the JSON schema
 * cache are all reused. The global operator new is replaced (for this whole test
 * binary) by one that forwards to malloc and counts calls while a test asks it to.
 */
#include "core_test_support.hpp"

#include <atomic>
#include <cstdlib>
#include <new>

namespace
{
std::atomic<bool> counting{false};
std::atomic<long> allocations{0};

void *counted_alloc(size_t size)
{
    if (counting.load(std::memory_order_relaxed))
        allocations.fetch_add(1, std::memory_order_relaxed);
    void *p = std::malloc(size == 0 ? 1 : size);
    if (p == nullptr)
        throw std::bad_alloc();
    return p;
}
} // namespace

/* default visibility: the build hides symbols, and libprotobuf must see these */
#define WS_TEST_EXPORT __attribute__((visibility("default")))
WS_TEST_EXPORT void *operator new(size_t size)
{
    return counted_alloc(size);
}
WS_TEST_EXPORT void *operator new[](size_t size)
{
    return counted_alloc(size);
}
WS_TEST_EXPORT void operator delete(void *p) noexcept
{
    std::free(p);
}
WS_TEST_EXPORT void operator delete[](void *p) noexcept
{
    std::free(p);
}
WS_TEST_EXPORT void operator delete(void *p, size_t) noexcept
{
    std::free(p);
}
WS_TEST_EXPORT void operator delete[](void *p, size_t) noexcept
{
    std::free(p);
}

using namespace walship_test;

namespace
{

/* Encodes rows of one table (values vary, shapes do not) and counts allocations. */
long allocations_for_rows(const Settings &settings)
{
    TestEncoder enc(settings);
    const std::string short_text = "abc", long_text(500, 'x'), numeric = "12345.6789";
    const std::string ints = "{1,2,NULL}", interval_text = "1 day";
    const unsigned char uuid[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    /* protobuf takes arrays element by element (the shim's WS_VALUE_ARRAY), JSON as text */
    bool json = false;
    for (const auto &pair : settings.pairs)
        json = json || (std::string(pair.first) == "format" && std::string(pair.second) == "json");
    ArrayHolder tag_elements({v_int(1), v_int(2), v_null()}, {3});
    ArrayHolder matrix({v_int(1), v_int(2), v_int(3), v_int(4)}, {2, 2}, {0, 1});

    auto row = [&](int i, const std::string &text) {
        auto b = std::make_unique<ChangeBuilder>(i % 2 == 0 ? WS_OP_INSERT : WS_OP_UPDATE);
        std::vector<ColumnSpec> columns = {
            {"id", INT8OID, v_int(i), true, -1, true},
            {"name", TEXTOID, v_text(text)},
            {"price", NUMERICOID, v_numeric(numeric), false, numeric_typmod(12, 4)},
            {"amount", NUMERICOID, v_numeric(numeric)},
            {"ratio", FLOAT8OID, v_double(i / 3.0)},
            {"ok", BOOLOID, v_bool(i % 3 == 0)},
            {"at", TIMESTAMPTZOID, v_timestamp(1700000000000000 + i)},
            {"day", DATEOID, v_date(19000 + i)},
            {"uid", UUIDOID, v_uuid(uuid)},
            {"tags", INT4ARRAYOID, json ? v_other(ints) : tag_elements.value(), false, -1, false,
             INT4OID},
            {"grid", INT4ARRAYOID, json ? v_other(ints) : matrix.value(), false, -1, false,
             INT4OID},
            {"at_tz", TIMESTAMPTZOID, v_timestamptz(1700000000000000 + i)},
            {"span", INTERVALOID, v_interval(1, 2, 3, interval_text)},
            {"gone", TEXTOID, i % 2 == 0 ? v_null() : v_toast()},
        };
        b->after(columns);
        if (i % 2 != 0)
            b->before(columns);
        return b;
    };
    /* one table handle for every row, as the shim's relation cache keeps it */
    auto shape = row(1, short_text);
    shape->with_table(enc.get());
    auto with_table = [&](std::unique_ptr<ChangeBuilder> b) {
        b->change().table = shape->get()->table;
        return b;
    };

    /* warm up with the largest values, both operations */
    for (int i = 0; i < 4; i++) {
        auto b = with_table(row(i, long_text));
        enc.event(b->get());
        enc.key(b->get());
    }
    std::vector<std::unique_ptr<ChangeBuilder>> rows;
    for (int i = 0; i < 100; i++)
        rows.push_back(with_table(row(i, i % 5 == 0 ? long_text : short_text)));

    ws_encoded out{};
    ws_error err{};
    allocations = 0;
    counting = true;
    for (const auto &b : rows) {
        if (ws_encode(enc.get(), b->get(), true, &out, &err) != WS_OK)
            break;
    }
    counting = false;
    return allocations.load();
}

} // namespace

TEST(CoreAllocations, ProtobufRowsEncodeWithoutHeapAllocation)
{
    EXPECT_EQ(allocations_for_rows({}), 0);
}

TEST(CoreAllocations, DebeziumJsonRowsEncodeWithoutHeapAllocation)
{
    EXPECT_EQ(allocations_for_rows({{"format", "json"}}), 0);
    EXPECT_EQ(allocations_for_rows({{"format", "json"}, {"decimal-handling", "precise"}}), 0);
    EXPECT_EQ(allocations_for_rows({{"format", "json"}, {"json-schema", "false"}}), 0);
}

TEST(CoreAllocations, CounterSeesAllocations)
{
    /* guards the two tests above against a counter that counts nothing */
    allocations = 0;
    counting = true;
    auto *p = new std::string(100, 'x');
    counting = false;
    delete p;
    EXPECT_GE(allocations.load(), 2);
}
