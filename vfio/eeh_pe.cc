#include "vfio/eeh_pe.h"

namespace nv2pt::vfio {

// eeh_pe_get_state over pnv_eeh_get_pe_state: the PHB never reports a PE's reset as active (only the host's own
// recovery does, which the model has not), so RESET does not come back from here; a PE whose DMA runs but whose
// MMIO is frozen has no VFIO state of its own and reads UNAVAIL.
uint32_t EehPe::state_locked() const {
  if (!mmio_frozen_ && !dma_frozen_) return VFIO_EEH_PE_STATE_NORMAL;
  if (mmio_frozen_ && dma_frozen_) return VFIO_EEH_PE_STATE_STOPPED;
  if (dma_frozen_) return VFIO_EEH_PE_STATE_STOPPED_DMA;
  return VFIO_EEH_PE_STATE_UNAVAIL;
}

uint32_t EehPe::state() const {
  MutexLock lock(mutex_);
  return state_locked();
}

bool EehPe::reset_asserted() const {
  MutexLock lock(mutex_);
  return reset_asserted_;
}

void EehPe::freeze() {
  MutexLock lock(mutex_);
  mmio_frozen_ = dma_frozen_ = true;
}

Result<long> EehPe::op(const vfio_eeh_pe_op& op) {
  MutexLock lock(mutex_);
  switch (op.op) {
    case VFIO_EEH_PE_GET_STATE: return state_locked();
    // eeh_pe_set_option(EEH_OPT_DISABLE) does nothing: EEH cannot be turned off for one PE.
    case VFIO_EEH_PE_DISABLE: return 0;
    // EEH_OPT_ENABLE is eeh_pe_change_owner: a PE found frozen is thawed (MMIO, then DMA).
    case VFIO_EEH_PE_ENABLE: thaw_locked(); return 0;
    case VFIO_EEH_PE_UNFREEZE_IO: mmio_frozen_ = false; return 0;
    case VFIO_EEH_PE_UNFREEZE_DMA: dma_frozen_ = false; return 0;
    // Deassert, unblock config space, then eeh_pe_reenable_devices thaws the PE (passed-through PEs included).
    case VFIO_EEH_PE_RESET_DEACTIVATE:
      reset_asserted_ = false;
      thaw_locked();
      return 0;
    // The PE is frozen first (EEH_OPT_FREEZE_PE) so that no MMIO reaches it during the reset.
    case VFIO_EEH_PE_RESET_HOT:
    case VFIO_EEH_PE_RESET_FUNDAMENTAL:
      mmio_frozen_ = dma_frozen_ = true;
      reset_asserted_ = true;
      return 0;
    // eeh_pe_configure has nothing left to do on PowerNV: it thaws nothing.
    case VFIO_EEH_PE_CONFIGURE: return 0;
    case VFIO_EEH_PE_INJECT_ERR:
      // type 0 = 32-bit, 1 = 64-bit error; funcs are the PAPR error function numbers 0..19 (eeh_pe_inject_err).
      if (op.err.type > 1 || op.err.func > 19) return fail(kEINVAL);
      // The PHB would freeze the PE at the next access matching addr/mask; the model freezes it at once.
      mmio_frozen_ = dma_frozen_ = true;
      return 0;
    default: return fail(kEINVAL);
  }
}

}  // namespace nv2pt::vfio
