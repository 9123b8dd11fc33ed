// Error values of the emulated kernel: std::expected<T, Errno> inside, -1/errno only at the interposer boundary.
#pragma once

#include <cerrno>
#include <expected>
#include <string_view>

namespace nv2pt {

// A positive errno value (EINVAL, EPERM, ...). Kept as a distinct type so that a raw int cannot be returned by
// accident where an error is meant.
struct Errno {
  int value;
  constexpr bool operator==(const Errno&) const = default;
};

inline constexpr Errno kEPERM{EPERM};
inline constexpr Errno kENOENT{ENOENT};
inline constexpr Errno kEIO{EIO};
inline constexpr Errno kEBADF{EBADF};
inline constexpr Errno kENOMEM{ENOMEM};
inline constexpr Errno kEFAULT{EFAULT};
inline constexpr Errno kEBUSY{EBUSY};
inline constexpr Errno kENODEV{ENODEV};
inline constexpr Errno kEINVAL{EINVAL};
inline constexpr Errno kENOSPC{ENOSPC};
inline constexpr Errno kENOTTY{ENOTTY};
inline constexpr Errno kENXIO{ENXIO};
inline constexpr Errno kE2BIG{E2BIG};
inline constexpr Errno kEAGAIN{EAGAIN};
inline constexpr Errno kEEXIST{EEXIST};

template <class T>
using Result = std::expected<T, Errno>;

// `return fail(kEINVAL);` reads better than std::unexpected at every error site.
constexpr std::unexpected<Errno> fail(Errno e) { return std::unexpected<Errno>(e); }

// Symbolic name ("EINVAL") for messages and reports; falls back to the number.
std::string_view errno_name(Errno e);

namespace detail {
template <class T>
T take_value(std::expected<T, Errno>&& r) { return std::move(*r); }
inline void take_value(std::expected<void, Errno>&&) {}
}  // namespace detail

}  // namespace nv2pt

// Propagate an error from an expression returning Result<T>; evaluates to the value (GNU statement expression,
// like SerenityOS's TRY()).
#define NV2PT_TRY(expr)                                              \
  ({                                                                 \
    auto nv2pt_try_result_ = (expr);                                 \
    if (!nv2pt_try_result_) return ::std::unexpected(nv2pt_try_result_.error()); \
    ::nv2pt::detail::take_value(std::move(nv2pt_try_result_));       \
  })
