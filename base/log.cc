#include "base/log.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace nv2pt {

void log_line(std::string_view message) noexcept {
  constexpr std::string_view kPrefix = "nv2pt: ";
  char line[kMaxLogLine];
  const size_t body = std::min(message.size(), sizeof line - kPrefix.size() - 1);
  std::memcpy(line, kPrefix.data(), kPrefix.size());
  std::memcpy(line + kPrefix.size(), message.data(), body);
  const size_t len = kPrefix.size() + body;
  line[len] = '\n';
  // One write keeps the line whole among other writers; retried only if a signal interrupted it before any byte.
  while (::write(STDERR_FILENO, line, len + 1) < 0 && errno == EINTR) {
  }
}

}  // namespace nv2pt
