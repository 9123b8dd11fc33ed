#include "platform/hmi_log.h"

namespace nv2pt::platform {

std::string_view to_string(HmiCause cause) {
  switch (cause) {
    case HmiCause::kUntrainedLink: return "untrained-link";
    case HmiCause::kBeyondRealRam: return "beyond-real-ram";
  }
  return "unknown";
}

std::string_view to_string(HmiPolicy policy) {
  switch (policy) {
    case HmiPolicy::kFatal: return "fatal";
    case HmiPolicy::kLog: return "log";
  }
  return "unknown";
}

void HmiLog::add(const Hmi& hmi) {
  if (entries_.size() == kKept) entries_.pop_front();
  entries_.push_back(hmi);
  ++count_;
}

void HmiLog::record(const Hmi& hmi) {
  MutexLock lock(mutex_);
  add(hmi);
}

void HmiLog::record_fatal(const Hmi& hmi) {
  std::function<void(const Hmi&)> hook;
  {
    MutexLock lock(mutex_);
    add(hmi);
    hook = fatal_hook_;
  }
  if (hook) hook(hmi);
}

void HmiLog::set_fatal_hook(std::function<void(const Hmi&)> hook) {
  MutexLock lock(mutex_);
  fatal_hook_ = std::move(hook);
}

std::vector<Hmi> HmiLog::entries() const {
  MutexLock lock(mutex_);
  return {entries_.begin(), entries_.end()};
}

uint64_t HmiLog::count() const {
  MutexLock lock(mutex_);
  return count_;
}

}  // namespace nv2pt::platform
