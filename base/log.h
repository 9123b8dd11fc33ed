// The one path by which the model tells the user something outside a call's result: a line "nv2pt: <message>" on
// stderr. One write(2) from a stack buffer, no stdio and no allocation, so it is safe inside free() (the compat
// switch logs from there) and while the client holds stdio's locks. A message longer than kMaxLogLine is cut.
#pragma once

#include <cstddef>
#include <string_view>

namespace nv2pt {

inline constexpr size_t kMaxLogLine = 1024;

void log_line(std::string_view message) noexcept;

}  // namespace nv2pt
