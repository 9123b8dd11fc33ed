// `nv2pt run [options] -- <program> [args...]`: runs an unmodified VFIO client (QEMU 7.2) against the emulated
// host. Sets LD_PRELOAD to libnv2pt_preload.so and the NV2PT_* variables the library reads (see
// interpose/preload_options.h), runs the program, waits, prints where the report is and a summary of it, and exits
// with the program's status (128 + signal if it was killed).
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "cli/command.h"

namespace nv2pt::cli {

struct RunOptions {
  std::string hmi;                  // "" = the library's default (fatal)
  std::string report;               // "" = <runtime dir>/report-<pid>.json
  std::string compat;               // NV2PT_COMPAT (a vector option would swallow the "--" before the program)
  std::string log;                  // event log
  std::string runtime_dir;
  std::string preload;              // "" = found next to the nv2pt binary
  bool quiet = false;               // no summary
  std::vector<std::string> command;
};

void register_run_command(CLI::App& app, Context& context);

// libnv2pt_preload.so: $NV2PT_PRELOAD, else <dir of nv2pt>/../lib/, else the build tree's path.
std::string find_preload_library();

// A few lines for a human: devices, groups, windows, TCEs, registered and locked memory, HMIs, links, compat.
std::string format_report_summary(const nlohmann::json& report);

// How the program ended, from its wait status and its report (null if it wrote none): the signal that killed it,
// and when that was a fatal HMI, which one (GPU, address, reason); or why there is no report. Empty for a
// normal exit with a report.
std::string describe_end(const std::string& program, int wait_status, const nlohmann::json* report);

}  // namespace nv2pt::cli
