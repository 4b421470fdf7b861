/*
 * out_buf.hpp: the growable byte buffer the JSON writers append an event to.
 *
 * It has the part of std::string's interface the writers use, but every append is
 * inline: one capacity check, one memcpy (a few moves for the literal pieces of JSON,
 * whose length the compiler knows), no terminating NUL to keep. std::string's append
 * is a call into libstdc++ for each of an event's hundred small pieces, which cost
 * more than writing the values. Writers that know an upper bound of what they write
 * (numbers, dates) take room() once and write through a pointer.
 *
 * Unlike std::string's, its appends must not take bytes of the buffer itself (a growth
 * moves them). The buffer is reused for every event, so the hot path allocates nothing once it
 * has grown to the largest event; release_if_large() gives back a huge one.
 */
#ifndef WALSHIP_OUT_BUF_HPP
#define WALSHIP_OUT_BUF_HPP

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <string_view>
#include <utility>

namespace walship
{

class OutBuf
{
  public:
    OutBuf() = default;
    OutBuf(const OutBuf &) = delete;
    OutBuf &operator=(const OutBuf &) = delete;
    OutBuf(OutBuf &&other) noexcept
        : begin_(std::exchange(other.begin_, nullptr)), cur_(std::exchange(other.cur_, nullptr)),
          end_(std::exchange(other.end_, nullptr))
    {
    }
    OutBuf &operator=(OutBuf &&other) noexcept
    {
        if (this != &other) {
            std::free(begin_);
            begin_ = std::exchange(other.begin_, nullptr);
            cur_ = std::exchange(other.cur_, nullptr);
            end_ = std::exchange(other.end_, nullptr);
        }
        return *this;
    }
    ~OutBuf()
    {
        std::free(begin_);
    }

    size_t size() const
    {
        return static_cast<size_t>(cur_ - begin_);
    }
    bool empty() const
    {
        return cur_ == begin_;
    }
    size_t capacity() const
    {
        return static_cast<size_t>(end_ - begin_);
    }
    char *data()
    {
        return begin_;
    }
    const char *data() const
    {
        return begin_;
    }
    std::string_view view() const
    {
        return std::string_view(begin_, size());
    }
    std::string str() const
    {
        return std::string(begin_, size());
    }
    char back() const
    {
        return cur_[-1];
    }
    char &operator[](size_t i)
    {
        return begin_[i];
    }

    void clear()
    {
        cur_ = begin_;
    }
    /* Shrinks, or grows with NUL bytes, as std::string::resize. */
    void resize(size_t n)
    {
        size_t have = size();
        if (n > have)
            std::memset(room(n - have), 0, n - have);
        if (begin_ != nullptr)
            cur_ = begin_ + n;
    }
    void pop_back()
    {
        cur_--;
    }

    /* Room for n more bytes: write them at the pointer, then advance_to() past them. */
    char *room(size_t n)
    {
        if (static_cast<size_t>(end_ - cur_) < n)
            grow(n);
        return cur_;
    }
    void advance_to(char *p)
    {
        cur_ = p;
    }

    void push_back(char c)
    {
        if (cur_ == end_)
            grow(1);
        *cur_++ = c;
    }
    void append(const char *s, size_t n)
    {
        if (n == 0) /* s may be null then, which memcpy must not see */
            return;
        if (static_cast<size_t>(end_ - cur_) < n)
            grow(n);
        std::memcpy(cur_, s, n);
        cur_ += n;
    }
    void append(size_t n, char c)
    {
        if (n == 0)
            return;
        std::memset(room(n), c, n);
        cur_ += n;
    }
    OutBuf &operator+=(char c)
    {
        push_back(c);
        return *this;
    }
    OutBuf &operator+=(std::string_view s)
    {
        append(s.data(), s.size());
        return *this;
    }

    /* Gives back the memory of a buffer grown above limit (before its next use). */
    void release_if_large(size_t limit)
    {
        if (capacity() > limit) {
            std::free(begin_);
            begin_ = cur_ = end_ = nullptr;
        }
    }

  private:
    void grow(size_t n)
    {
        size_t used = size();
        size_t want = capacity() * 2;
        if (want < used + n)
            want = used + n;
        if (want < 256)
            want = 256;
        char *p = static_cast<char *>(std::realloc(begin_, want));
        if (p == nullptr)
            throw std::bad_alloc();
        begin_ = p;
        cur_ = p + used;
        end_ = p + want;
    }

    char *begin_ = nullptr;
    char *cur_ = nullptr;
    char *end_ = nullptr;
};

} // namespace walship

#endif
