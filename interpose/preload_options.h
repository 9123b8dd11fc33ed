// How the preload library is configured: environment variables, read once when the emulated host is created.
//
//   NV2PT_TOPOLOGY     .dts or .dtb of the machine; unset or empty: the embedded default
//   NV2PT_HMI          fatal (default) | log
//   NV2PT_REPORT       JSON report path, written at exit and on NV2PT_REPORT_SIGNAL
//   NV2PT_REPORT_SIGNAL  signal that asks for a report now: a number or USR1/USR2 (default USR2; QEMU uses
//                      SIGUSR1 to kick vCPU threads); "none" for no signal. The handler is only installed if the
//                      program left the signal at its default.
//   NV2PT_RUNTIME_DIR  directory of the group lock files; default /run/user/<uid>/nv2pt if /run/user/<uid>
//                      exists, else /tmp/nv2pt-<uid>
//   NV2PT_COMPAT       comma-separated client-compatibility switches: NAME (on), no-NAME (off), auto (default:
//                      each switch decides from the program), none (all off)
//   NV2PT_LOG          event log file (appended), optional
//   NV2PT_DMA_REQUESTS file of device DMA requests run on the report signal, results to FILE.json (dma_requests.h)
//   NV2PT_PAGE_SIZE    the page size getpagesize() answers the client: "host" for the modelled POWER9 host's
//                      64 KiB (what QEMU on that host sees: it then backs 16 MiB guest IOMMU pages with 64 KiB TCEs
//                      and pre-registers in 64 KiB units), "machine" or unset for the machine's own
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "base/errno.h"
#include "platform/hmi_log.h"

namespace nv2pt::interpose {

// The one switch there is: QEMU 7.2 keeps pointers into the NVLink2 region-info buffers it frees
// (docs/qemu-7.2.md#region-info-use-after-free).
inline constexpr std::string_view kQemu72RegionInfoUaf = "qemu72-nvlink2-region-info-uaf";

enum class SwitchSetting { kAuto, kOn, kOff };

struct PreloadOptions {
  std::string topology;
  platform::HmiPolicy hmi = platform::HmiPolicy::kFatal;
  std::string report;
  int report_signal = 0;  // 0: none
  std::string runtime_dir;
  std::string log;
  SwitchSetting qemu72_uaf = SwitchSetting::kAuto;
  long page_size = 0;  // 0: the machine's own
  std::string dma_requests;
};

// `getenv` is a parameter so tests can feed their own environment. Errors name the variable and the bad value.
using Getenv = const char* (*)(const char*);
std::expected<PreloadOptions, std::string> read_preload_options(Getenv getenv_fn);

// The parsers behind it, for the CLI (which validates before it execs) and tests.
std::optional<platform::HmiPolicy> parse_hmi_policy(std::string_view text);
std::expected<SwitchSetting, std::string> parse_compat(std::string_view text);
std::optional<int> parse_signal(std::string_view text);
std::string default_runtime_dir();
// NV2PT_PAGE_SIZE: "host" -> the model's host page size, "machine" or empty -> 0 (the machine's own).
std::optional<long> parse_page_size(std::string_view text);

}  // namespace nv2pt::interpose
