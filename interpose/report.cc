#include "interpose/report.h"

#include <unistd.h>

#include <fmt/chrono.h>
#include <fmt/format.h>

#include <cstdio>
#include <map>

#include "base/host_page.h"
#include "interpose/interposer.h"
#include "iommu/tce.h"
#include "mm/address_space.h"

namespace nv2pt::interpose {

namespace {

using nlohmann::json;

std::string hex(uint64_t v) { return fmt::format("{:#x}", v); }

std::string_view setting_name(SwitchSetting s) {
  switch (s) {
    case SwitchSetting::kAuto: return "auto";
    case SwitchSetting::kOn: return "on";
    case SwitchSetting::kOff: return "off";
  }
  return "?";
}

json window_json(const vfio::SpaprTceIommu::WindowInfo& w, mm::AddressSpace& as) {
  const iommu::TceTable& t = *w.table;
  json j = {
      {"slot", w.slot},
      {"start", hex(t.bus_start())},
      {"page_shift", t.page_shift()},
      {"page_size", t.page_size()},
      {"levels", t.geometry().levels},
      {"window_size", hex(t.geometry().window_size)},
      {"table_bytes", t.geometry().table_bytes()},
      {"allocated_bytes", t.allocated_bytes()},
      {"charged_pages", w.charged_pages},
  };
  uint64_t mapped = 0;
  json tces = json::array();
  t.for_each_leaf(false, [&](uint64_t first, iommu::TceTable::Leaf leaf) {
    for (uint64_t i = 0; i < leaf.count; ++i) {
      const uint64_t tce = iommu::from_be(leaf.entries[i].load(std::memory_order_relaxed));
      if (!(tce & iommu::kTcePermMask)) continue;
      ++mapped;
      if (tces.size() >= kReportTceLimit) continue;
      const uint64_t index = first + i;
      const uint64_t hpa = tce & ~uint64_t{0xfff};
      json e = {{"ioba", hex(t.bus_start() + (index << t.page_shift()))},
                {"hpa", hex(hpa)},
                {"perm", std::string((tce & iommu::kTceRead) ? "r" : "") + ((tce & iommu::kTceWrite) ? "w" : "")}};
      if (t.has_userspace_cache()) {
        if (const uint64_t ua = t.cached_ua(index)) {
          e["ua"] = hex(ua);
          // What the page pinner gave that user page: the hpa a correct TCE must hold.
          if (auto pinned = as.pinner().ua_to_hpa(ua)) e["pinned_hpa"] = hex(*pinned);
        }
      }
      tces.push_back(std::move(e));
    }
  });
  j["tces_mapped"] = mapped;
  j["tces"] = std::move(tces);
  return j;
}

json hmi_json(const platform::Hmi& h) {
  return {{"time", fmt::format("{:%Y-%m-%dT%H:%M:%S}", fmt::gmtime(std::chrono::system_clock::to_time_t(h.time)))},
          {"gpu", h.gpu.to_string()},
          {"hpa", hex(h.hpa)},
          {"cause", std::string(platform::to_string(h.cause))}};
}

// The HMI that kills the process, with its signal.
json fatal_hmi_json(const platform::Hmi& h) {
  json f = hmi_json(h);
  f["signal"] = "SIGBUS";
  return f;
}

json compat_json(CompatSwitch& c) {
  json compat = {{"setting", setting_name(c.setting())},
                 {"kept_buffers", c.kept_buffers()},
                 {"skipped_frees", c.skipped_frees()}};
  if (auto a = c.active()) compat["active"] = *a;
  else compat["active"] = nullptr;
  if (std::string p = c.detected_program(); !p.empty()) compat["detected_program"] = p;
  return {{std::string(kQemu72RegionInfoUaf), compat}};
}

// The fds open now: containers by their serial (for names), device fds counted per device.
struct OpenFds {
  std::map<const vfio::Container*, unsigned> container_serial;
  std::map<const vfio::PciDevice*, int> device_fds;

  OpenFds() {
    for (auto [fd, o] : fd_table().entries()) {
      if (o->kind == FdKind::kContainer && o->container) container_serial[o->container.get()] = o->serial;
      if (o->kind == FdKind::kDevice) ++device_fds[o->device];
    }
  }
  json serial_of(const vfio::Container* c) const {
    auto it = container_serial.find(c);
    return it != container_serial.end() ? json(it->second) : json(nullptr);
  }
};

json devices_json(vfio::Host& host, const OpenFds& fds) {
  json devices = json::array();
  for (const platform::PciFunction& f : host.machine().pci_functions()) {
    vfio::PciDevice* d = host.device(f.address);
    if (!d || d->open_count() == 0) continue;
    auto n = fds.device_fds.find(d);
    devices.push_back({{"address", f.address.to_string()},
                       {"iommu_group", d->iommu_group()},
                       {"open_count", d->open_count()},
                       {"fds", n != fds.device_fds.end() ? n->second : 0},
                       {"extra_regions", d->extra_region_names()}});
  }
  return devices;
}

json groups_json(vfio::Host& host, const OpenFds& fds) {
  json groups = json::array();
  for (int id : host.group_ids()) {
    vfio::Group* g = host.group(id);
    if (!g->is_open() && !g->container()) continue;
    json members = json::array();
    for (const vfio::PciDevice* d : g->devices()) members.push_back(d->name());
    json j = {{"id", id}, {"open", g->is_open()}, {"viable", g->viable()}, {"devices", members}};
    if (auto ct = g->container(); ct && fds.container_serial.contains(ct.get()))
      j["container"] = fds.serial_of(ct.get());
    groups.push_back(std::move(j));
  }
  return groups;
}

json containers_json(vfio::Host& host, const OpenFds& fds, mm::AddressSpace& as) {
  json containers = json::array();
  for (const std::shared_ptr<vfio::Container>& ct : host.containers()) {
    json j;
    j["container"] = fds.serial_of(ct.get());
    json gids = json::array();
    for (const vfio::Group* g : ct->groups()) gids.push_back(g->id());
    j["groups"] = gids;
    vfio::SpaprTceIommu* iommu = ct->iommu();
    if (!iommu) {
      j["iommu"] = nullptr;
    } else {
      j["iommu"] = iommu->version() == vfio::SpaprTceIommu::Version::kV2 ? "spapr-tce-v2" : "spapr-tce-v1";
      j["enabled"] = iommu->enabled();
      j["default_window_pending"] = iommu->default_window_pending();
      j["charged_pages"] = iommu->charged_pages();
      json windows = json::array();
      for (const auto& w : iommu->windows()) windows.push_back(window_json(w, as));
      j["windows"] = std::move(windows);
      json regs = json::array();
      for (const mm::RegionRef& reg : iommu->registrations()) regs.push_back(hex(reg->ua()));
      j["registrations"] = std::move(regs);
    }
    containers.push_back(std::move(j));
  }
  return containers;
}

json registered_memory_json(mm::AddressSpace& as) {
  json regions = json::array();
  as.registry().for_each([&](const mm::RegisteredRegion& reg) {
    json j = {{"ua", hex(reg.ua())},
              {"size", hex(reg.size())},
              {"kind", reg.is_device() ? "device" : "pinned"},
              {"page_shift", reg.page_shift()},
              {"used", reg.used()},
              {"mapped", reg.mapped()}};
    if (reg.is_device()) j["dev_hpa"] = hex(*reg.dev_hpa());
    else j["first_hpa"] = hex(reg.page_hpa(0));
    regions.push_back(std::move(j));
  });
  return regions;
}

json locked_memory_json(mm::AddressSpace& as) {
  const uint64_t locked = as.locked_memory().locked_pages();
  return {{"pages", locked},
          {"bytes", locked * kHostPageSize},
          {"pinned_pages", as.pinner().pinned_pages()},
          {"underflows", as.locked_memory().underflows()}};
}

json hmis_json(vfio::Host& host) {
  json hmis = json::array();
  for (const platform::Hmi& h : host.hardware().hmi_log().entries()) hmis.push_back(hmi_json(h));
  return hmis;
}

json links_json(vfio::Host& host) {
  json links = json::array();
  const platform::Machine& m = host.machine();
  for (const platform::NvlinkBridge& b : m.bridges()) {
    auto state = host.hardware().link_state(b.address);
    const platform::Gpu* gpu = m.gpu_of(b);
    links.push_back({{"bridge", b.address.to_string()},
                     {"gpu", gpu ? json(gpu->address.to_string()) : json(nullptr)},
                     {"state", state ? json(std::string(platform::to_string(*state))) : json(nullptr)}});
  }
  return links;
}

json gpu_ram_json(vfio::Host& host) {
  json gpu_ram = json::array();
  for (const platform::Gpu& g : host.machine().gpus()) {
    platform::GpuRam* ram = host.hardware().gpu_ram(g.address);
    if (!ram) continue;
    const auto& cfg = ram->config();
    gpu_ram.push_back({{"gpu", g.address.to_string()},
                       {"window_base", hex(cfg.window_base)},
                       {"window_size", hex(cfg.window_size)},
                       {"real_size", hex(cfg.real_size)},
                       {"populated_pages", ram->populated_pages()}});
  }
  return gpu_ram;
}

}  // namespace

json build_report(Interposer& ip, const platform::Hmi* fatal) {
  json r;
  r["nv2pt_report"] = 1;
  r["pid"] = getpid();
  r["time"] = fmt::format("{:%Y-%m-%dT%H:%M:%S}", fmt::gmtime(std::time(nullptr)));
  r["topology"] = ip.options().topology.empty() ? "embedded default" : ip.options().topology;
  r["hmi_policy"] = std::string(platform::to_string(ip.options().hmi));
  r["compat"] = compat_json(ip.compat());

  vfio::Host* host = ip.host();
  if (!host) {
    r["error"] = "the topology did not load: no emulated devices";
    return r;
  }
  mm::AddressSpace& as = mm::AddressSpace::current();
  const OpenFds fds;
  r["devices"] = devices_json(*host, fds);
  json opened = json::object();
  for (const auto& [name, count] : ip.devices_opened()) opened[name] = count;
  r["device_fds_opened"] = std::move(opened);
  r["groups"] = groups_json(*host, fds);
  r["containers"] = containers_json(*host, fds, as);
  r["registered_memory"] = registered_memory_json(as);
  r["locked_memory"] = locked_memory_json(as);
  r["hmis"] = hmis_json(*host);
  r["hmi_count"] = host->hardware().hmi_log().count();  // all of them; "hmis" holds the latest HmiLog::kKept
  if (fatal) r["fatal_hmi"] = fatal_hmi_json(*fatal);
  r["links"] = links_json(*host);
  r["gpu_ram"] = gpu_ram_json(*host);
  return r;
}

namespace {

// Through a temporary file of this thread and a rename.
}  // namespace

Result<void> write_json_file(const json& value, const std::string& path) {
  const std::string text = value.dump(2) + "\n";
  const std::string tmp = fmt::format("{}.tmp.{}.{}", path, getpid(), gettid());
  FILE* f = std::fopen(tmp.c_str(), "w");
  if (!f) return fail(Errno{errno});
  const bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
  if (std::fclose(f) != 0 || !ok) {
    std::remove(tmp.c_str());
    return fail(kEIO);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    return fail(Errno{errno});
  }
  return {};
}

Result<void> write_report_file(Interposer& ip, const std::string& path, const platform::Hmi* fatal) {
  return write_json_file(build_report(ip, fatal), path);
}

Result<void> write_fatal_hmi_only_report(const std::string& path, const platform::Hmi& fatal) {
  json r;
  r["nv2pt_report"] = 1;
  r["pid"] = getpid();
  r["time"] = fmt::format("{:%Y-%m-%dT%H:%M:%S}", fmt::gmtime(std::time(nullptr)));
  r["error"] = "the model's state could not be read at the fatal HMI (the touching thread held a lock of it)";
  r["hmis"] = json::array({hmi_json(fatal)});
  r["fatal_hmi"] = fatal_hmi_json(fatal);
  return write_json_file(r, path);
}

}  // namespace nv2pt::interpose
