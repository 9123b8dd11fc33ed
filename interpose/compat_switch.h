// The QEMU 7.2 region-info use-after-free switch (docs/qemu-7.2.md#region-info-use-after-free).
//
// QEMU 7.2's NVLink2 quirks register the QOM properties nvlink2-tgt and nvlink2-link-speed as pointers into the
// vfio_region_info buffer of VFIO_DEVICE_GET_REGION_INFO, then g_free() that buffer; at machine reset the GPU's
// tgt often reads 0 and no NVLink2 node reaches the guest. With the switch on, the interposer remembers the exact
// buffers it filled with an NVLink2 capability chain, and its free() skips exactly those (64 or 80 bytes each).
//
// Setting: on, off, or auto (default): on when the program is QEMU 7.2 (/proc/self/exe is a qemu-system-* binary
// whose version string says 7.2), decided at the first buffer that would need it.
#pragma once

#include <atomic>
#include <cstddef>
#include <mutex>
#include <optional>
#include <string>

#include "interpose/preload_options.h"

namespace nv2pt::interpose {

class CompatSwitch {
 public:
  explicit CompatSwitch(SwitchSetting setting) : setting_(setting) {}

  // GET_REGION_INFO filled `buffer` with an NVLink2 capability chain: keep it if the switch is on.
  void note_nvlink2_region_info(void* buffer);
  // Called by every free(): true if `p` must not be freed. Cheap when nothing is kept.
  bool keep(void* p) {
    if (count_.load(std::memory_order_acquire) == 0 || !p) return false;
    return keep_slow(p);
  }

  SwitchSetting setting() const { return setting_; }
  // The decision (auto resolved), nullopt while auto is undecided.
  std::optional<bool> active() const;
  size_t kept_buffers() const { return kept_total_.load(std::memory_order_relaxed); }
  size_t skipped_frees() const { return skipped_.load(std::memory_order_relaxed); }
  std::string detected_program() const;

 private:
  static constexpr size_t kMaxKept = 256;
  bool keep_slow(void* p);
  bool decide();

  const SwitchSetting setting_;
  mutable std::mutex mutex_;
  std::optional<bool> active_;
  std::string program_;  // "QEMU 7.2.22" etc. when auto looked
  std::atomic<void*> kept_[kMaxKept] = {};
  std::atomic<size_t> count_{0};  // slots used
  std::atomic<size_t> kept_total_{0};
  std::atomic<size_t> skipped_{0};
  std::atomic<bool> announced_{false};
};

// What the running program is, for auto: {"qemu-system-ppc64", "7.2.22"}; empty strings when not QEMU. Reads
// /proc/self/exe's name, then finds QEMU's version banner in the mapped binary.
struct ProgramIdentity {
  std::string name;
  std::string qemu_version;
};
ProgramIdentity identify_program();
bool is_qemu_72(const ProgramIdentity& id);

}  // namespace nv2pt::interpose
