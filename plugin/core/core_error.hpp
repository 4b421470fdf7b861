/*
 * core_error.hpp: what every C++ core file includes first.
 *
 * Owns two things: the compile-time guard that no PostgreSQL header reaches the C++
 * core, and the exception types the core throws. Exceptions never leave the core: the
 * one guard (boundary.hpp) around every extern "C" function turns them into a
 * ws_status plus a ws_error, which the C shim reports with ws_ereport.
 */
#ifndef WALSHIP_CORE_ERROR_HPP
#define WALSHIP_CORE_ERROR_HPP

/*
 * postgres.h defines POSTGRES_H. PostgreSQL's headers redefine things C++ relies on
 * (and its ERROR is a longjmp that would skip destructors), so a C++ core file that
 * sees one is a bug: fail the build instead of finding out in production.
 */
#ifdef POSTGRES_H
#error                                                                                             \
    "a PostgreSQL header reached the C++ core; only the .c files of plugin/ and extension/ may include them"
#endif

#include "walship_core.h"

#include <stdexcept>
#include <string>
#include <utility>

namespace walship
{

/*
 * What the core throws when it must refuse: the kind (the C side's SQLSTATE), and
 * errmsg, errdetail and errhint as PostgreSQL shows them. Only the guard of
 * boundary.hpp catches it.
 */
class CoreError : public std::runtime_error
{
  public:
    CoreError(ws_error_kind kind, const std::string &message, std::string detail = {},
              std::string hint = {})
        : std::runtime_error(message), kind_(kind), detail_(std::move(detail)),
          hint_(std::move(hint))
    {
    }

    ws_error_kind kind() const
    {
        return kind_;
    }
    const std::string &detail() const
    {
        return detail_;
    }
    const std::string &hint() const
    {
        return hint_;
    }

  private:
    ws_error_kind kind_;
    std::string detail_;
    std::string hint_;
};

/* Bytes or values that are not what they claim to be (a bad event, a bad row). */
class InputError : public CoreError
{
  public:
    explicit InputError(const std::string &message, std::string detail = {}, std::string hint = {})
        : CoreError(WS_ERR_INVALID_DATA, message, std::move(detail), std::move(hint))
    {
    }
};

/* Something larger than the format or a setting allows. */
class LimitError : public CoreError
{
  public:
    explicit LimitError(const std::string &message, std::string hint = {})
        : CoreError(WS_ERR_LIMIT, message, {}, std::move(hint))
    {
    }
};

} // namespace walship

#endif
