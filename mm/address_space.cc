#include "mm/address_space.h"

#include <unistd.h>

namespace nv2pt::mm {

namespace {
thread_local AddressSpace* t_current_override = nullptr;
}  // namespace

AddressSpace::AddressSpace(AddressSpaceOptions options)
    : id_(options.id ? options.id : static_cast<uint64_t>(getpid())),
      locked_(std::move(options.memlock)),
      pinner_(std::move(options.pinner)),
      registry_(locked_, pinner_) {}

AddressSpace& AddressSpace::current() {
  if (t_current_override) return *t_current_override;
  // Never destroyed: other layers' statics may still release regions during exit.
  static AddressSpace* process = new AddressSpace();
  return *process;
}

AddressSpace::ScopedCurrent::ScopedCurrent(AddressSpace& as) : previous_(t_current_override) {
  t_current_override = &as;
}

AddressSpace::ScopedCurrent::~ScopedCurrent() { t_current_override = previous_; }

}  // namespace nv2pt::mm
