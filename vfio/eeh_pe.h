// EEH ("enhanced error handling") state of the PE behind a VFIO group, as VFIO_EEH_PE_OP drives it
// (vfio_spapr_eeh.c). The model keeps the PE state machine; errors are raised by injection.
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

  bool enabled() const;
  // Freezes the PE as an error would (both MMIO and DMA stopped).
  void freeze();
  uint32_t state() const;

 private:
  mutable Mutex mutex_;
  bool enabled_ NV2PT_GUARDED_BY(mutex_) = false;
  bool io_frozen_ NV2PT_GUARDED_BY(mutex_) = false;
  bool dma_frozen_ NV2PT_GUARDED_BY(mutex_) = false;
  bool in_reset_ NV2PT_GUARDED_BY(mutex_) = false;
};

}  // namespace nv2pt::vfio
