/*
 * core_error.hpp: what every C++ core file includes first.
 *
 * Owns two things: the compile-time guard that no PostgreSQL header reaches the C++
 * core, and the one exception type the core throws for bad input. Exceptions never
 * leave the core: the extern "C" functions in core_api.cpp catch them and turn them
 * into a ws_status plus a message the C shim reports with ereport.
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

#include <stdexcept>
#include <string>

namespace walship
{

/* Bad input from the user or the shim: the message is reported to the user as is. */
class InputError : public std::runtime_error
{
  public:
    explicit InputError(const std::string &message) : std::runtime_error(message) {}
};

} // namespace walship

#endif
