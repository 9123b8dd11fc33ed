#include "interpose/fd_table.h"

namespace nv2pt::interpose {

bool FdTable::install(int fd, std::unique_ptr<FdObject> object) {
  if (fd < 0 || fd >= kMaxFd) return false;
  FdObject* expected = nullptr;
  if (!slots_[fd].compare_exchange_strong(expected, object.get(), std::memory_order_acq_rel)) return false;
  object.release();
  int hw = high_water_.load(std::memory_order_relaxed);
  while (fd >= hw && !high_water_.compare_exchange_weak(hw, fd + 1, std::memory_order_relaxed)) {
  }
  return true;
}

FdObject* FdTable::remove(int fd) {
  if (fd < 0 || fd >= kMaxFd) return nullptr;
  FdObject* object = slots_[fd].exchange(nullptr, std::memory_order_acq_rel);
  if (object) {
    MutexLock lock(retired_mutex_);
    retired_.emplace_back(object);
  }
  return object;
}

std::vector<std::pair<int, const FdObject*>> FdTable::entries() const {
  std::vector<std::pair<int, const FdObject*>> out;
  const int hw = high_water_.load(std::memory_order_relaxed);
  for (int fd = 0; fd < hw; ++fd) {
    if (const FdObject* o = slots_[fd].load(std::memory_order_acquire)) out.emplace_back(fd, o);
  }
  return out;
}

}  // namespace nv2pt::interpose
