// A PCI function that is neither a GPU nor an NVLink bridge: a plain endpoint header with the topology's ids, no
// BARs and no capabilities, so vfio can still open and reset it.
#pragma once


#include "base/thread_annotations.h"
#include "platform/config_space.h"
#include "platform/pci_device_model.h"
#include "platform/pci_function.h"

namespace nv2pt::platform {

class GenericEndpoint : public PciDeviceModel {
 public:
  explicit GenericEndpoint(const PciFunction& function);

  uint32_t config_read(uint32_t offset, unsigned size) override;
  void config_write(uint32_t offset, unsigned size, uint32_t value) override;
  Bar bar(int /*index*/) const override { return {}; }
  Result<void> bar_read(int, uint64_t, std::span<std::byte>) override { return fail(kEINVAL); }
  Result<void> bar_write(int, uint64_t, std::span<const std::byte>) override { return fail(kEINVAL); }
  int bar_fd(int) const override { return -1; }
  bool has_flr() const override { return false; }
  void reset(ResetKind kind) override;

 private:
  void init_config() NV2PT_REQUIRES(mutex_);

  const PciFunction function_;
  Mutex mutex_;
  ConfigSpace config_ NV2PT_GUARDED_BY(mutex_);
};

}  // namespace nv2pt::platform
