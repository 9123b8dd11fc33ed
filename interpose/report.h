// The JSON report of the emulated host's state (NV2PT_REPORT): what a client opened and what it left behind.
// Written at exit and on the report signal; `nv2pt run` prints a summary of it.
//
//   devices            every device open now: address, group, open count, fds, extra regions
//   device_fds_opened  device fds handed out since the start, by device (closed ones included)
//   groups             id, open, viable, container
//   containers         IOMMU type, groups, windows (slot, start, page size, levels, window size, allocated and
//                      charged), TCEs mapped per window (count, and the first ones: ioba, hpa, ua, pinned hpa)
//   registered_memory  regions of this process: ua, size, device or pinned, used, mapped
//   locked_memory      pages charged to RLIMIT_MEMLOCK; pinned pages
//   hmis               time, GPU, address, cause
//   links              state per NVLink bridge
//   compat             the switch: setting, decision, buffers kept
//   dma_requests       only in a report the signal asked for while NV2PT_DMA_REQUESTS held requests
#pragma once

#include <nlohmann/json.hpp>

#include <string>

#include "base/errno.h"

namespace nv2pt::interpose {

class Interposer;

// TCEs listed per window (the count is always complete).
inline constexpr size_t kReportTceLimit = 256;

nlohmann::json build_report(Interposer& interposer);
// Writes the report to `path` through a temporary file and a rename, so a reader never sees half a report.
// `dma`: results of DMA requests run for this report (NV2PT_DMA_REQUESTS), as "dma_requests" if not null.
Result<void> write_report_file(Interposer& interposer, const std::string& path, const nlohmann::json& dma = nullptr);

}  // namespace nv2pt::interpose
