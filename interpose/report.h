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
//   fatal_hmi          only in a report written at a fatal HMI: that HMI and the signal that kills the process
//   links              state per NVLink bridge
//   compat             the switch: setting, decision, buffers kept
#pragma once

#include <nlohmann/json.hpp>

#include <string>

#include "base/errno.h"
#include "platform/hmi_log.h"

namespace nv2pt::interpose {

class Interposer;

// TCEs listed per window (the count is always complete).
inline constexpr size_t kReportTceLimit = 256;

// `fatal`: the report is written at that fatal HMI, which kills the process next (the report says so).
nlohmann::json build_report(Interposer& interposer, const platform::Hmi* fatal = nullptr);
// Writes the report to `path` (write_json_file). `fatal`: the HMI that kills the process next, as "fatal_hmi".
Result<void> write_report_file(Interposer& interposer, const std::string& path, const platform::Hmi* fatal = nullptr);
// Writes `value` to `path` through a temporary file and a rename, so a reader never sees half a file.
Result<void> write_json_file(const nlohmann::json& value, const std::string& path);
// The report of a fatal HMI whose state could not be read (the thread that saw it holds a lock the report needs):
// the HMI and why the rest is missing. Reads nothing of the model.
Result<void> write_fatal_hmi_only_report(const std::string& path, const platform::Hmi& fatal);

}  // namespace nv2pt::interpose
