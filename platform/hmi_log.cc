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

void HmiLog::record(const Hmi& hmi) {
  MutexLock lock(mutex_);
  entries_.add(hmi);
}

void HmiLog::record_fatal(const Hmi& hmi) {
  std::function<void(const Hmi&)> hook;
  {
    MutexLock lock(mutex_);
    entries_.add(hmi);
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
  return entries_.entries();
}

uint64_t HmiLog::count() const {
  MutexLock lock(mutex_);
  return entries_.count();
}

}  // namespace nv2pt::platform
