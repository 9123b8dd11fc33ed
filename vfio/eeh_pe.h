// EEH ("enhanced error handling") state of the PE behind a VFIO group, as VFIO_EEH_PE_OP drives it
// (vfio_spapr_iommu_eeh_ioctl over eeh_pe_set_option, eeh_pe_get_state, eeh_pe_reset, eeh_pe_configure and
// eeh_pe_inject_err, on the PowerNV platform). The state is the PHB's freeze state of the PE: MMIO and DMA frozen
// separately. There is no per-PE "EEH enabled" state: DISABLE does nothing and GET_STATE always reads the PHB.
#pragma once

#include "base/thread_annotations.h"
#include "vfio/uapi.h"

#include <cstdint>

#include "base/errno.h"

namespace nv2pt::vfio {

class EehPe {
 public:
  // Runs one operation. GET_STATE returns the state (VFIO_EEH_PE_STATE_*) as the call's value; the others 0.
  // EINVAL for an unknown op or a bad INJECT_ERR argument.
  Result<long> op(const vfio_eeh_pe_op& op);

  // Freezes the PE as an error would (both MMIO and DMA stopped).
  void freeze();
  uint32_t state() const;
  // A hot or fundamental reset asserted and not yet deactivated (config space is blocked meanwhile).
  bool reset_asserted() const;

 private:
  uint32_t state_locked() const NV2PT_REQUIRES(mutex_);
  void thaw_locked() NV2PT_REQUIRES(mutex_) { mmio_frozen_ = dma_frozen_ = false; }

  mutable Mutex mutex_;
  bool mmio_frozen_ NV2PT_GUARDED_BY(mutex_) = false;
  bool dma_frozen_ NV2PT_GUARDED_BY(mutex_) = false;
  bool reset_asserted_ NV2PT_GUARDED_BY(mutex_) = false;
};

}  // namespace nv2pt::vfio
