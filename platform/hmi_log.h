// Hardware management interrupts the model raised: a touch of GPU RAM before the GPU's NVLinks were trained, or
// beyond the RAM really behind the 128 GiB window. On real hardware either one is a machine check (the CPU
// prefetches coherent memory, so even a stray load is fatal).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string_view>
#include <vector>

#include "base/bounded_log.h"
#include "base/thread_annotations.h"
#include "platform/pci_address.h"

namespace nv2pt::platform {

enum class HmiPolicy {
  kFatal,  // the faulting thread gets SIGBUS (the default, as on real hardware)
  kLog,    // recorded; the access goes on (reads of missing RAM see zeros)
};

enum class HmiCause { kUntrainedLink, kBeyondRealRam };

std::string_view to_string(HmiCause cause);
std::string_view to_string(HmiPolicy policy);

struct Hmi {
  std::chrono::system_clock::time_point time;
  PciAddress gpu;
  uint64_t hpa;  // host physical address touched
  HmiCause cause;
};

// The latest kKept HMIs and the count of all of them: a client under the `log` policy can raise HMIs without end
// (a pread of untrained GPU RAM in a loop), and a log that kept them all would grow as long as the process lives.
class HmiLog {
 public:
  static constexpr size_t kKept = 1024;

  void record(const Hmi& hmi);
  // A fatal HMI: recorded, then the fatal hook runs, before the caller sends the signal that kills the process.
  void record_fatal(const Hmi& hmi);
  // What runs for a fatal HMI: the last moment the process can save what it knows (the interposer writes its
  // report there). It runs on the thread that saw the HMI, which may hold locks of the model.
  void set_fatal_hook(std::function<void(const Hmi&)> hook);
  // The kept HMIs, oldest first.
  std::vector<Hmi> entries() const;
  // Every HMI recorded, kept or not.
  uint64_t count() const;

 private:
  mutable Mutex mutex_;
  BoundedLog<Hmi, kKept> entries_ NV2PT_GUARDED_BY(mutex_);
  std::function<void(const Hmi&)> fatal_hook_ NV2PT_GUARDED_BY(mutex_);
};

}  // namespace nv2pt::platform
