#include "vfio/eeh_pe.h"

namespace nv2pt::vfio {

uint32_t EehPe::state() const {
  MutexLock lock(mutex_);
  if (!enabled_) return VFIO_EEH_PE_STATE_UNAVAIL;
  if (in_reset_) return VFIO_EEH_PE_STATE_RESET;
  if (io_frozen_ && dma_frozen_) return VFIO_EEH_PE_STATE_STOPPED;
  if (dma_frozen_) return VFIO_EEH_PE_STATE_STOPPED_DMA;
  return VFIO_EEH_PE_STATE_NORMAL;
}

bool EehPe::enabled() const {
  MutexLock lock(mutex_);
  return enabled_;
}

void EehPe::freeze() {
  MutexLock lock(mutex_);
  io_frozen_ = dma_frozen_ = true;
}

Result<long> EehPe::op(const vfio_eeh_pe_op& op) {
  if (op.op == VFIO_EEH_PE_GET_STATE) return state();
  MutexLock lock(mutex_);
  switch (op.op) {
    case VFIO_EEH_PE_DISABLE: enabled_ = false; return 0;
    case VFIO_EEH_PE_ENABLE: enabled_ = true; return 0;
    case VFIO_EEH_PE_UNFREEZE_IO: io_frozen_ = false; return 0;
    case VFIO_EEH_PE_UNFREEZE_DMA: dma_frozen_ = false; return 0;
    case VFIO_EEH_PE_RESET_DEACTIVATE: in_reset_ = false; return 0;
    case VFIO_EEH_PE_RESET_HOT:
    case VFIO_EEH_PE_RESET_FUNDAMENTAL: in_reset_ = true; return 0;
    case VFIO_EEH_PE_CONFIGURE: io_frozen_ = dma_frozen_ = false; return 0;
    case VFIO_EEH_PE_INJECT_ERR:
      // type 0 = 32-bit, 1 = 64-bit error; funcs are the PAPR error function numbers 0..19.
      if (op.err.type > 1 || op.err.func > 19) return fail(kEINVAL);
      io_frozen_ = dma_frozen_ = true;
      return 0;
    default: return fail(kEINVAL);
  }
}

}  // namespace nv2pt::vfio
