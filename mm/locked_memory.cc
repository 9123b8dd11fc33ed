#include "mm/locked_memory.h"

#include <linux/capability.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "base/checked.h"
#include "base/host_page.h"

namespace nv2pt::mm {

namespace {

constexpr unsigned kCapIpcLock = 14;  // CAP_IPC_LOCK, stable ABI number

std::optional<bool> cap_from_capget() {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
  if (syscall(SYS_capget, &header, data) != 0) return std::nullopt;
  return (data[kCapIpcLock / 32].effective >> (kCapIpcLock % 32)) & 1;
}

std::optional<bool> cap_from_proc_status() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("CapEff:", 0) != 0) continue;
    try {
      uint64_t bits = std::stoull(line.substr(7), nullptr, 16);
      return (bits >> kCapIpcLock) & 1;
    } catch (...) {
      return std::nullopt;
    }
  }
  return std::nullopt;
}

}  // namespace

bool process_has_cap_ipc_lock() {
  if (auto cap = cap_from_capget()) return *cap;
  return cap_from_proc_status().value_or(false);
}

MemlockPolicy MemlockPolicy::current_process() {
  return MemlockPolicy([] {
    rlimit rl{};
    uint64_t limit = UINT64_MAX;
    if (getrlimit(RLIMIT_MEMLOCK, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) limit = rl.rlim_cur;
    return MemlockLimits{limit, process_has_cap_ipc_lock()};
  });
}

MemlockPolicy MemlockPolicy::fixed(uint64_t limit_bytes, bool cap_ipc_lock) {
  return MemlockPolicy([=] { return MemlockLimits{limit_bytes, cap_ipc_lock}; });
}

LockedMemory::LockedMemory(MemlockPolicy policy) : policy_(std::move(policy)) {}

Result<void> LockedMemory::charge(uint64_t pages) {
  MutexLock lock(mu_);
  const MemlockLimits limits = policy_.read();
  auto total = checked_add(locked_pages_, pages);
  if (!total) return fail(kENOMEM);
  if (!limits.cap_ipc_lock && *total > (limits.limit_bytes >> kHostPageShift)) return fail(kENOMEM);
  locked_pages_ = *total;
  return {};
}

void LockedMemory::uncharge(uint64_t pages) {
  MutexLock lock(mu_);
  if (pages > locked_pages_) {
    underflows_.fetch_add(1, std::memory_order_relaxed);
    locked_pages_ = 0;
    return;
  }
  locked_pages_ -= pages;
}

uint64_t LockedMemory::locked_pages() const {
  MutexLock lock(mu_);
  return locked_pages_;
}

void LockedMemory::set_policy(MemlockPolicy policy) {
  MutexLock lock(mu_);
  policy_ = std::move(policy);
}

}  // namespace nv2pt::mm
