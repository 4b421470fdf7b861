/*
 * boundary.hpp: the one guard around every extern "C" function of the core and the
 * sink (walship_core.h, walship_sink.h).
 *
 * guarded() runs a body and turns whatever it throws into a ws_status plus a filled
 * ws_error: a CoreError keeps its kind and texts, std::bad_alloc is out of memory, and
 * anything else is a bug in walship (WS_ERR_INTERNAL). No exception reaches C, and the
 * C side reports with ws_ereport after the call returned, so no PostgreSQL ERROR
 * (a longjmp) ever unwinds a C++ frame.
 */
#ifndef WALSHIP_BOUNDARY_HPP
#define WALSHIP_BOUNDARY_HPP

#include "core_error.hpp"
#include "walship_core.h"

#include <cstring>
#include <new>
#include <string_view>

namespace walship
{

/*
 * Copies text into out (size bytes, size > 0), NUL-terminated, cut before the first
 * UTF-8 character that does not fit whole. Allocates nothing.
 */
inline void copy_text(char *out, size_t size, std::string_view text) noexcept
{
    size_t n = text.size();
    if (n >= size) {
        n = size - 1;
        /* leave out a character cut in half: at most 3 continuation bytes (on text that
         * is not UTF-8, no further) */
        for (int back = 0;
             back < 3 && n > 0 && (static_cast<unsigned char>(text[n]) & 0xC0) == 0x80; back++)
            n--;
    }
    if (n > 0)
        std::memcpy(out, text.data(), n);
    out[n] = '\0';
}

/* Copies text into one of err's buffers, never cutting a UTF-8 character in half. */
inline void copy_error_text(char (&out)[WS_ERRMSG_SIZE], std::string_view text) noexcept
{
    copy_text(out, sizeof(out), text);
}

/* Fills err (which may be NULL: the caller does not want to know). */
inline void set_error(ws_error *err, ws_error_kind kind, std::string_view message,
                      std::string_view detail = {}, std::string_view hint = {}) noexcept
{
    if (err == nullptr)
        return;
    err->kind = kind;
    copy_error_text(err->message, message);
    copy_error_text(err->detail, detail);
    copy_error_text(err->hint, hint);
}

template <typename Body> ws_status guarded(ws_error *err, Body &&body) noexcept
{
    try {
        body();
        if (err != nullptr)
            err->kind = WS_ERR_NONE;
        return WS_OK;
    } catch (const CoreError &e) {
        set_error(err, e.kind(), e.what(), e.detail(), e.hint());
    } catch (const std::bad_alloc &) {
        set_error(err, WS_ERR_OUT_OF_MEMORY, "out of memory");
    } catch (const std::exception &e) {
        set_error(err, WS_ERR_INTERNAL, e.what());
    } catch (...) {
        set_error(err, WS_ERR_INTERNAL, "unexpected internal error in the walship core");
    }
    return WS_ERROR;
}

} // namespace walship

#endif
