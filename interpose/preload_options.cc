#include "interpose/preload_options.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <charconv>

#include "base/host_page.h"

namespace nv2pt::interpose {

std::optional<platform::HmiPolicy> parse_hmi_policy(std::string_view text) {
  if (text == "fatal") return platform::HmiPolicy::kFatal;
  if (text == "log") return platform::HmiPolicy::kLog;
  return std::nullopt;
}

std::expected<SwitchSetting, std::string> parse_compat(std::string_view text) {
  SwitchSetting setting = SwitchSetting::kAuto;
  while (!text.empty()) {
    const size_t comma = text.find(',');
    std::string_view item = text.substr(0, comma);
    text = comma == std::string_view::npos ? std::string_view() : text.substr(comma + 1);
    if (item.empty() || item == "auto") {
      if (!item.empty()) setting = SwitchSetting::kAuto;
    } else if (item == "none") {
      setting = SwitchSetting::kOff;
    } else if (item == kQemu72RegionInfoUaf || item == std::string(kQemu72RegionInfoUaf) + "=on") {
      setting = SwitchSetting::kOn;
    } else if (item == "no-" + std::string(kQemu72RegionInfoUaf) || item == std::string(kQemu72RegionInfoUaf) + "=off") {
      setting = SwitchSetting::kOff;
    } else {
      return std::unexpected("unknown compatibility switch '" + std::string(item) + "' (known: " +
                             std::string(kQemu72RegionInfoUaf) + ", no-" + std::string(kQemu72RegionInfoUaf) +
                             ", auto, none)");
    }
  }
  return setting;
}

std::optional<int> parse_signal(std::string_view text) {
  if (text == "none" || text == "0") return 0;
  if (text == "USR1" || text == "SIGUSR1") return SIGUSR1;
  if (text == "USR2" || text == "SIGUSR2") return SIGUSR2;
  int v = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || ptr != text.data() + text.size() || v <= 0 || v >= NSIG) return std::nullopt;
  return v;
}

std::optional<long> parse_page_size(std::string_view text) {
  if (text.empty() || text == "machine") return 0;
  if (text == "host") return static_cast<long>(kHostPageSize);
  return std::nullopt;
}

std::string default_runtime_dir() {
  const std::string run_user = "/run/user/" + std::to_string(getuid());
  struct stat st;
  if (::stat(run_user.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) return run_user + "/nv2pt";
  return "/tmp/nv2pt-" + std::to_string(getuid());
}

std::expected<PreloadOptions, std::string> read_preload_options(Getenv getenv_fn) {
  auto env = [&](const char* name) -> std::string_view {
    const char* v = getenv_fn(name);
    return v ? std::string_view(v) : std::string_view();
  };
  PreloadOptions o;
  o.topology = env("NV2PT_TOPOLOGY");
  if (std::string_view hmi = env("NV2PT_HMI"); !hmi.empty()) {
    auto policy = parse_hmi_policy(hmi);
    if (!policy) return std::unexpected("NV2PT_HMI='" + std::string(hmi) + "': expected fatal or log");
    o.hmi = *policy;
  }
  o.report = env("NV2PT_REPORT");
  std::string_view sig = env("NV2PT_REPORT_SIGNAL");
  auto signal = parse_signal(sig.empty() ? "USR2" : sig);
  if (!signal) return std::unexpected("NV2PT_REPORT_SIGNAL='" + std::string(sig) + "': expected USR1, USR2, a number or none");
  o.report_signal = *signal;
  o.runtime_dir = env("NV2PT_RUNTIME_DIR");
  if (o.runtime_dir.empty()) o.runtime_dir = default_runtime_dir();
  o.log = env("NV2PT_LOG");
  o.dma_requests = env("NV2PT_DMA_REQUESTS");
  auto compat = parse_compat(env("NV2PT_COMPAT"));
  if (!compat) return std::unexpected("NV2PT_COMPAT: " + compat.error());
  o.qemu72_uaf = *compat;
  std::string_view page = env("NV2PT_PAGE_SIZE");
  auto page_size = parse_page_size(page);
  if (!page_size) return std::unexpected("NV2PT_PAGE_SIZE='" + std::string(page) + "': expected host or machine");
  o.page_size = *page_size;
  return o;
}

}  // namespace nv2pt::interpose
