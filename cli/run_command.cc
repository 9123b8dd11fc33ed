#include "cli/run_command.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include "cli/format.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>

#include "interpose/preload_options.h"

namespace nv2pt::cli {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string join(const std::vector<std::string>& items, std::string_view sep) {
  std::string out;
  for (const std::string& s : items) out += (out.empty() ? "" : std::string(sep)) + s;
  return out;
}

uint64_t hex_value(const json& j) {
  if (j.is_number_unsigned()) return j.get<uint64_t>();
  if (!j.is_string()) return 0;
  return std::strtoull(j.get<std::string>().c_str(), nullptr, 0);
}

// Children forward nothing: the terminal sends ^C to the whole process group, and the program decides.
int wait_for(pid_t child) {
  int status = 0;
  while (waitpid(child, &status, 0) < 0) {
    if (errno != EINTR) return -1;
  }
  return status;
}

void run(Context& context, RunOptions& o) {
  if (o.command.empty()) return context.fail("run: no program given (nv2pt run [options] -- <program> [args...])");
  // The same checks the library would make, so a typo fails here and not silently inside the client.
  if (!o.hmi.empty() && !interpose::parse_hmi_policy(o.hmi))
    return context.fail(fmt::format("run: --hmi {}: expected fatal or log", o.hmi));
  const std::string& compat = o.compat;
  if (auto c = interpose::parse_compat(compat); !c) return context.fail("run: --compat: " + c.error());
  // Load (and validate) the topology now: a bad file is reported by nv2pt, not by the client's "no such device".
  if (!context.machine()) return;

  const std::string preload = o.preload.empty() ? find_preload_library() : o.preload;
  if (preload.empty() || !fs::exists(preload))
    return context.fail("run: libnv2pt_preload.so not found (set NV2PT_PRELOAD or --preload)");
  // --runtime-dir, else the caller's NV2PT_RUNTIME_DIR, else the library's default.
  std::string runtime_dir = o.runtime_dir;
  if (const char* env = getenv("NV2PT_RUNTIME_DIR"); runtime_dir.empty() && env && *env) runtime_dir = env;
  if (runtime_dir.empty()) runtime_dir = interpose::default_runtime_dir();
  std::error_code ec;
  fs::create_directories(runtime_dir, ec);
  const std::string report =
      o.report.empty() ? fmt::format("{}/report-{}.json", runtime_dir, getpid()) : fs::absolute(o.report).string();
  fs::remove(report, ec);  // a stale report must not pass for this run's

  std::string ld_preload = fs::absolute(preload).string();
  if (const char* old = getenv("LD_PRELOAD"); old && *old) ld_preload += std::string(":") + old;

  std::vector<std::pair<std::string, std::string>> env = {
      {"LD_PRELOAD", ld_preload},
      {"NV2PT_TOPOLOGY", context.options.topology.empty() ? "" : fs::absolute(context.options.topology).string()},
      {"NV2PT_REPORT", report},
      {"NV2PT_RUNTIME_DIR", runtime_dir},
  };
  if (!o.hmi.empty()) env.emplace_back("NV2PT_HMI", o.hmi);
  if (!compat.empty()) env.emplace_back("NV2PT_COMPAT", compat);
  if (!o.log.empty()) env.emplace_back("NV2PT_LOG", fs::absolute(o.log).string());

  context.out.flush();
  std::vector<char*> argv;
  for (std::string& a : o.command) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t child = fork();
  if (child < 0) return context.fail(fmt::format("run: fork: {}", std::strerror(errno)), 1);
  if (child == 0) {
    for (auto& [k, v] : env) {
      if (v.empty()) unsetenv(k.c_str());
      else setenv(k.c_str(), v.c_str(), 1);
    }
    execvp(argv[0], argv.data());
    const std::string msg = fmt::format("nv2pt: error: run: {}: {}\n", argv[0], std::strerror(errno));
    (void)!write(2, msg.data(), msg.size());
    _exit(127);
  }
  // Like system(): ^C and ^\ are for the program; nv2pt waits and reports.
  struct sigaction ignore{}, old_int{}, old_quit{};
  ignore.sa_handler = SIG_IGN;
  sigaction(SIGINT, &ignore, &old_int);
  sigaction(SIGQUIT, &ignore, &old_quit);
  const int status = wait_for(child);
  sigaction(SIGINT, &old_int, nullptr);
  sigaction(SIGQUIT, &old_quit, nullptr);

  if (status < 0) {
    context.exit_code = 1;
  } else if (WIFEXITED(status)) {
    context.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    context.exit_code = 128 + WTERMSIG(status);
  }
  if (status >= 0 && WIFEXITED(status) && context.exit_code == 127) return;  // exec failed: said so already
  std::optional<json> j;
  bool valid = true;
  if (fs::exists(report)) {
    std::ifstream in(report);
    j = json::parse(in, nullptr, false);
    valid = !j->is_discarded();
  }
  if (status >= 0) context.err << describe_end(o.command[0], status, j ? &*j : nullptr);
  if (!j) return;
  context.err << "nv2pt: report: " << report << (valid && j->contains("fatal_hmi") ? " (the state at the HMI)" : "")
              << "\n";
  if (!o.log.empty()) context.err << "nv2pt: event log: " << fs::absolute(o.log).string() << "\n";
  if (o.quiet) return;
  if (!valid) {
    context.err << "nv2pt: the report is not valid JSON\n";
    return;
  }
  context.err << format_report_summary(*j);
}

// What a cause in the report means.
std::string_view hmi_cause_text(std::string_view cause) {
  if (cause == "untrained-link") return "GPU RAM touched before the GPU's NVLinks were trained";
  if (cause == "beyond-real-ram") return "GPU RAM touched beyond the RAM really behind the window";
  return cause;
}

}  // namespace

std::string describe_end(const std::string& program, int status, const json* report) {
  std::string out;
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    if (report && report->contains("fatal_hmi")) {
      const json& h = (*report)["fatal_hmi"];
      out += fmt::format("nv2pt: {} was killed by {} after a fatal HMI: GPU {}, host address {}: {} ({})\n", program,
                         h.value("signal", "SIGBUS"), h.value("gpu", "?"), h.value("hpa", "?"),
                         hmi_cause_text(h.value("cause", "")), h.value("cause", "?"));
    } else {
      out += fmt::format("nv2pt: {} was killed by signal {} ({})\n", program, sig, strsignal(sig));
    }
    if (!report) out += "nv2pt: no report: the program was killed before it wrote one (it is written at exit)\n";
  } else if (!report) {
    out += "nv2pt: no report: the program made no VFIO call\n";
  }
  return out;
}

std::string find_preload_library() {
  if (const char* env = getenv("NV2PT_PRELOAD"); env && *env) return env;
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    for (const fs::path& candidate : {exe.parent_path() / "../lib/libnv2pt_preload.so",
                                      exe.parent_path() / "libnv2pt_preload.so"}) {
      if (fs::exists(candidate, ec)) return fs::weakly_canonical(candidate, ec).string();
    }
  }
#ifdef NV2PT_PRELOAD_BUILD_PATH
  if (fs::exists(NV2PT_PRELOAD_BUILD_PATH, ec)) return NV2PT_PRELOAD_BUILD_PATH;
#endif
  return "";
}

std::string format_report_summary(const json& r) {
  std::string out = r.contains("fatal_hmi") ? "nv2pt: summary of the emulated host at the fatal HMI:\n"
                                            : "nv2pt: summary of the emulated host at exit:\n";
  if (r.contains("error")) out += fmt::format("  error: {}\n", r["error"].get<std::string>());
  std::vector<std::string> devices;
  for (const json& d : r.value("devices", json::array())) {
    std::string regions = join(d.value("extra_regions", std::vector<std::string>{}), ", ");
    devices.push_back(d["address"].get<std::string>() + (regions.empty() ? "" : " (" + regions + ")"));
  }
  out += fmt::format("  devices open: {}\n", devices.empty() ? "none" : join(devices, ", "));
  for (const json& c : r.value("containers", json::array())) {
    std::vector<std::string> groups;
    for (const json& g : c["groups"]) groups.push_back(std::to_string(g.get<int>()));
    out += fmt::format("  container {}: {}, groups {}, {} locked pages for tables\n",
                       c["container"].is_null() ? "(fd closed)" : std::to_string(c["container"].get<int>()),
                       c["iommu"].is_null() ? "no IOMMU set" : c["iommu"].get<std::string>(),
                       groups.empty() ? "none" : join(groups, ", "), c.value("charged_pages", 0));
    for (const json& w : c.value("windows", json::array())) {
      out += fmt::format("    window {}: start {}, {} pages, {} levels, size {}, {} of tables allocated, {} TCEs mapped\n",
                         w["slot"].get<int>(), w["start"].get<std::string>(), size_text(w["page_size"].get<uint64_t>()),
                         w["levels"].get<int>(), size_text(hex_value(w["window_size"])),
                         size_text(w["allocated_bytes"].get<uint64_t>()), w["tces_mapped"].get<uint64_t>());
    }
  }
  for (const json& m : r.value("registered_memory", json::array())) {
    out += fmt::format("  registered {} memory at {}: {}, used {}, mapped {}\n", m["kind"].get<std::string>(),
                       m["ua"].get<std::string>(), size_text(hex_value(m["size"])), m["used"].get<uint64_t>(),
                       m["mapped"].get<uint64_t>());
  }
  if (r.contains("locked_memory")) {
    const json& l = r["locked_memory"];
    out += fmt::format("  locked memory: {} pages of 64 KiB ({}), {} pages pinned\n", l["pages"].get<uint64_t>(),
                       size_text(l["bytes"].get<uint64_t>()), l["pinned_pages"].get<uint64_t>());
  }
  const json hmis = r.value("hmis", json::array());
  const uint64_t hmi_count = r.value("hmi_count", uint64_t{hmis.size()});
  if (hmi_count == 0)
    out += "  HMIs: none\n";
  else if (hmi_count == hmis.size())
    out += fmt::format("  HMIs: {}\n", hmi_count);
  else
    out += fmt::format("  HMIs: {} (the latest {} listed)\n", hmi_count, hmis.size());
  for (const json& h : hmis) {
    out += fmt::format("    {} GPU {} hpa {}: {}\n", h["time"].get<std::string>(), h["gpu"].get<std::string>(),
                       h["hpa"].get<std::string>(), h["cause"].get<std::string>());
  }
  std::map<std::string, std::vector<std::string>> by_state;
  for (const json& l : r.value("links", json::array())) {
    by_state[l["state"].is_null() ? "unknown" : l["state"].get<std::string>()].push_back(l["bridge"].get<std::string>());
  }
  for (auto& [state, bridges] : by_state) out += fmt::format("  links {}: {}\n", state, bridges.size());
  if (r.contains("compat")) {
    for (auto& [name, c] : r["compat"].items()) {
      std::string active = c["active"].is_null() ? "undecided" : (c["active"].get<bool>() ? "on" : "off");
      out += fmt::format("  compat {}: {} (setting {}), {} buffers kept\n", name, active,
                         c["setting"].get<std::string>(), c["kept_buffers"].get<uint64_t>());
    }
  }
  return out;
}

void register_run_command(CLI::App& app, Context& context) {
  auto o = std::make_shared<RunOptions>();
  CLI::App* run_cmd = app.add_subcommand(
      "run", "Run an unmodified VFIO client (e.g. qemu-system-ppc64) against the emulated host: nv2pt run -- PROGRAM ARGS...");
  run_cmd->add_option("--hmi", o->hmi, "What a premature GPU-RAM touch does: fatal (SIGBUS, default) or log");
  run_cmd->add_option("--report", o->report, "JSON report path (default: <runtime dir>/report-<pid>.json)");
  run_cmd->add_option("--compat", o->compat,
                      "Client-compatibility switches, comma-separated: qemu72-nvlink2-region-info-uaf, "
                      "no-qemu72-nvlink2-region-info-uaf, auto (default: on for QEMU 7.2) or none");
  run_cmd->add_option("--log", o->log, "Event log: one line per VFIO call the model served");
  run_cmd->add_option("--runtime-dir", o->runtime_dir,
                      "Directory of the group lock files (default: $NV2PT_RUNTIME_DIR, else /run/user/<uid>/nv2pt or "
                      "/tmp/nv2pt-<uid>); processes sharing it exclude each other from groups");
  run_cmd->add_option("--preload", o->preload, "The preload library (default: found next to nv2pt)");
  run_cmd->add_flag("-q,--quiet", o->quiet, "Print only where the report is, no summary");
  run_cmd->add_option("command", o->command, "The program and its arguments, after --")->required();
  run_cmd->callback([&context, o] { run(context, *o); });
}

}  // namespace nv2pt::cli
