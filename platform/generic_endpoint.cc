#include "platform/generic_endpoint.h"

namespace nv2pt::platform {

GenericEndpoint::GenericEndpoint(const PciFunction& function) : PciDeviceModel(function.address), function_(function) {
  MutexLock lock(mutex_);
  init_config();
}

void GenericEndpoint::init_config() {
  config_ = ConfigSpace();
  config_.init(0x00, 2, function_.vendor_id);
  config_.init(0x02, 2, function_.device_id);
  config_.init(0x04, 2, 0, 0x0547);
  config_.init(0x06, 2, 0, 0, 0xf900);
  config_.init(0x08, 1, function_.revision);
  config_.init(0x09, 1, function_.class_code & 0xff);
  config_.init(0x0a, 2, static_cast<uint16_t>(function_.class_code >> 8));
  config_.init(0x3c, 1, 0, 0xff);
}

uint32_t GenericEndpoint::config_read(uint32_t offset, unsigned size) {
  MutexLock lock(mutex_);
  return config_.read(offset, size);
}

void GenericEndpoint::config_write(uint32_t offset, unsigned size, uint32_t value) {
  MutexLock lock(mutex_);
  config_.write(offset, size, value);
}

void GenericEndpoint::reset(ResetKind /*kind*/) {
  MutexLock lock(mutex_);
  init_config();
}

}  // namespace nv2pt::platform
