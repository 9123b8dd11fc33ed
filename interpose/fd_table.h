// Which file descriptors stand for emulated kernel objects: a flat array indexed by fd with one atomic pointer per
// slot, so the lookup every wrapped call does on a foreign fd is one relaxed load and no lock.
//
// Every emulated object is a real fd underneath (an eventfd for container and group, a memfd for a device or a
// file with content), so poll/select/fstat/close and fd-number allocation stay the real kernel's. An entry is
// installed after the real fd exists and removed before the real fd is closed: the fd number cannot be reused by
// the kernel while the entry is visible.
//
// Removed objects are retired, not deleted: another thread may still be inside a call on the fd it is closing
// (a client bug, but it must not become a use-after-free in the model). They are small; the model resources
// behind them are released at close.
#pragma once

#include <atomic>
#include <memory>
#include <vector>

#include "base/thread_annotations.h"

namespace nv2pt::vfio {
class Container;
class Group;
class PciDevice;
}  // namespace nv2pt::vfio

namespace nv2pt::interpose {

enum class FdKind { kContainer, kGroup, kDevice, kFile };

struct FdObject {
  FdKind kind;
  std::shared_ptr<vfio::Container> container;  // kContainer
  vfio::Group* group = nullptr;                 // kGroup; kDevice: the group it came from
  vfio::PciDevice* device = nullptr;            // kDevice
  unsigned serial = 0;                          // for logs and reports: container#1, ...
};

class FdTable {
 public:
  // fds at or above this are never ours (an emulated object whose fd would land there is refused with EMFILE).
  static constexpr int kMaxFd = 1 << 16;

  FdObject* find(int fd) const {
    if (fd < 0 || fd >= kMaxFd) return nullptr;
    return slots_[fd].load(std::memory_order_acquire);
  }
  // False if fd is out of range or taken.
  bool install(int fd, std::unique_ptr<FdObject> object);
  // The object that was at fd, now retired (still readable); nullptr if none.
  FdObject* remove(int fd);

  // Every live entry (fd, object), for reports.
  std::vector<std::pair<int, const FdObject*>> entries() const;

 private:
  std::atomic<FdObject*> slots_[kMaxFd] = {};
  mutable Mutex retired_mutex_;
  std::vector<std::unique_ptr<FdObject>> retired_ NV2PT_GUARDED_BY(retired_mutex_);
  std::atomic<int> high_water_{0};
};

}  // namespace nv2pt::interpose
