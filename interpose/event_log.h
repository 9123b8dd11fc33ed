// The event log (NV2PT_LOG): one line per VFIO call that reached the model, with its arguments and result, so a
// test or a user can follow what a client did ("12.345678 container#1 VFIO_IOMMU_SPAPR_TCE_CREATE ... = 0").
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "base/thread_annotations.h"

namespace nv2pt::interpose {

class EventLog {
 public:
  // Empty path: logging off. The file is appended to (several processes may share it).
  explicit EventLog(const std::string& path);
  ~EventLog();
  EventLog(const EventLog&) = delete;
  EventLog& operator=(const EventLog&) = delete;

  bool enabled() const { return fd_ >= 0; }
  void record(std::string_view line);

 private:
  int fd_ = -1;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  Mutex mutex_;
};

}  // namespace nv2pt::interpose
