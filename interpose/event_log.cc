#include "interpose/event_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <fmt/format.h>

namespace nv2pt::interpose {

EventLog::EventLog(const std::string& path) {
  if (!path.empty()) fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
}

EventLog::~EventLog() {
  if (fd_ >= 0) ::close(fd_);
}

void EventLog::record(std::string_view line) {
  if (fd_ < 0) return;
  const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  std::string text = fmt::format("{:.6f} {} {}\n", t, getpid(), line);
  MutexLock lock(mutex_);
  // O_APPEND makes each line one atomic append, also across processes.
  (void)!::write(fd_, text.data(), text.size());
}

}  // namespace nv2pt::interpose
