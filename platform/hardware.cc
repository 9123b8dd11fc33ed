#include "platform/hardware.h"

#include <atomic>
#include <map>
#include <mutex>

#include "base/bounded_log.h"
#include "base/checked.h"
#include "base/host_page.h"
#include "base/thread_annotations.h"
#include "platform/generic_endpoint.h"
#include "platform/gv100.h"
#include "platform/npu2_bridge.h"
#include "platform/sparse_memfd.h"

namespace nv2pt::platform {

namespace {

// An ATSD register block (skiboot's mmio-atsd entries): LAUNCH at +0x0, AVA at +0x8, STATUS at +0x10.
constexpr uint64_t kAtsdBlockSize = 0x10000;
constexpr uint64_t kAtsdLaunch = 0x0;
constexpr uint64_t kAtsdStatus = 0x10;

}  // namespace

struct Hardware::Impl {
  const Machine* machine = nullptr;
  HmiLog hmi_log;  // before the GpuRams, which keep a reference to it
  mutable Mutex opal_mutex;
  BoundedLog<Hardware::OpalNpuCall, Hardware::kOpalCallsKept> opal_calls NV2PT_GUARDED_BY(opal_mutex);
  std::map<PciAddress, uint64_t> npu_lpids NV2PT_GUARDED_BY(opal_mutex);
  std::atomic<HmiPolicy> policy{HmiPolicy::kFatal};
  std::map<PciAddress, std::unique_ptr<PciDeviceModel>> devices;
  std::map<PciAddress, Npu2Bridge*> bridges;
  std::map<PciAddress, std::vector<Npu2Bridge*>> gpu_bridges;  // in ibm,npu order
  std::map<uint64_t, SparseMemfd> atsd;                         // by host physical address
  Mutex atsd_mutex;                                        // serialises LAUNCH/STATUS updates
  std::map<PciAddress, std::unique_ptr<GpuRam>> rams;           // last: destroyed first

  bool links_trained(const PciAddress& gpu) const {
    auto it = gpu_bridges.find(gpu);
    if (it == gpu_bridges.end() || it->second.empty()) return false;
    for (const Npu2Bridge* b : it->second)
      if (b->link_state() != LinkState::kTrained) return false;
    return true;
  }
};

Hardware::Hardware(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Hardware::~Hardware() = default;

Result<std::unique_ptr<Hardware>> Hardware::create(const Machine& machine, HardwareOptions options) {
  auto impl = std::make_unique<Impl>();
  Impl& hw = *impl;
  hw.machine = &machine;
  hw.policy.store(options.hmi_policy);

  for (const PciFunction& f : machine.pci_functions()) {
    switch (f.kind) {
      case PciFunctionKind::kGpu: {
        Gv100::Identity id;
        id.vendor_id = f.vendor_id;
        id.device_id = f.device_id;
        id.revision = f.revision;
        id.class_code = f.class_code;
        hw.devices[f.address] = NV2PT_TRY(Gv100::create(f.address, id));
        break;
      }
      case PciFunctionKind::kNvlinkBridge: {
        const NvlinkBridge& b = machine.bridges()[f.role_index];
        Npu2Bridge::Identity id{f.vendor_id, f.device_id, f.revision, f.class_code};
        Npu2Bridge::Placement where;
        where.chip_id = machine.phbs()[b.phb].chip_id.value_or(0);
        const NvlinkLink* link = machine.link_of(b);
        // Without a link index skiboot would not have created the device; the function number is the best guess.
        where.link_index = (link && link->index && *link->index <= 5) ? *link->index : f.address.function;
        auto bridge = NV2PT_TRY(Npu2Bridge::create(f.address, id, where));
        hw.bridges[f.address] = bridge.get();
        hw.devices[f.address] = std::move(bridge);
        break;
      }
      case PciFunctionKind::kOther:
        hw.devices[f.address] = std::make_unique<GenericEndpoint>(f);
        break;
    }
  }

  for (const Gpu& gpu : machine.gpus()) {
    auto& list = hw.gpu_bridges[gpu.address];
    for (size_t bi : gpu.bridges) {
      const PciAddress& ba = machine.bridges()[bi].address;
      if (auto it = hw.bridges.find(ba); it != hw.bridges.end()) {
        list.push_back(it->second);
        it->second->set_pci_linked(true);
      }
    }
    // A GPU reset drops every link of that GPU first (skiboot's secondary-bus-reset trap).
    auto* model = static_cast<Gv100*>(hw.devices.at(gpu.address).get());
    std::vector<Npu2Bridge*> links = list;
    model->set_reset_listener([links] {
      for (Npu2Bridge* b : links) b->gpu_reset();
    });

    if (!gpu.memory) continue;
    const GpuMemory& mem = machine.gpu_memories()[*gpu.memory];
    if (!mem.window || mem.window->size == 0) continue;
    GpuRam::Config config;
    config.gpu = gpu.address;
    config.window_base = mem.window->base;
    config.window_size = mem.window->size;
    config.real_size = std::min(mem.real_size.value_or(mem.window->size), mem.window->size);
    config.policy = options.hmi_policy;
    const PciAddress address = gpu.address;
    Impl* self = &hw;
    hw.rams[gpu.address] =
        NV2PT_TRY(GpuRam::create(config, hw.hmi_log, [self, address] { return self->links_trained(address); }));
    // After a GPU reset the links are down: touches of pages mapped before must be checked again (no silent
    // access to GPU RAM through stale page-table entries).
    GpuRam* ram = hw.rams[gpu.address].get();
    model->set_reset_listener([links, ram] {
      for (Npu2Bridge* b : links) b->gpu_reset();
      ram->zap();
    });
    // Every change of a link's training state: once all are trained the kernel's fault path serves the real RAM,
    // when one drops the service checks touches again.
    for (Npu2Bridge* b : links) b->set_link_listener([ram] { ram->links_changed(); });
  }

  for (const Phb& phb : machine.phbs()) {
    if (phb.kind != PhbKind::kNpu) continue;
    for (uint64_t hpa : phb.atsd) {
      if (hw.atsd.contains(hpa)) continue;
      hw.atsd.emplace(hpa, NV2PT_TRY(SparseMemfd::create("nv2pt-atsd", kAtsdBlockSize)));
    }
  }
  return std::unique_ptr<Hardware>(new Hardware(std::move(impl)));
}

const Machine& Hardware::machine() const { return *impl_->machine; }

PciDeviceModel* Hardware::device(const PciAddress& address) {
  auto it = impl_->devices.find(address);
  return it == impl_->devices.end() ? nullptr : it->second.get();
}

GpuRam* Hardware::gpu_ram(const PciAddress& gpu) {
  auto it = impl_->rams.find(gpu);
  return it == impl_->rams.end() ? nullptr : it->second.get();
}

std::optional<LinkState> Hardware::link_state(const PciAddress& bridge) const {
  auto it = impl_->bridges.find(bridge);
  if (it == impl_->bridges.end()) return std::nullopt;
  return it->second->link_state();
}

bool Hardware::gpu_links_trained(const PciAddress& gpu) const { return impl_->links_trained(gpu); }

std::optional<int> Hardware::atsd_fd(uint64_t hpa) const {
  auto it = impl_->atsd.find(hpa);
  if (it == impl_->atsd.end()) return std::nullopt;
  return it->second.fd();
}

Result<void> Hardware::atsd_read(uint64_t hpa, uint64_t offset, std::span<std::byte> out) {
  auto it = impl_->atsd.find(hpa);
  if (it == impl_->atsd.end()) return fail(kEINVAL);
  MutexLock lock(impl_->atsd_mutex);
  return it->second.read(offset, out.data(), out.size());
}

Result<void> Hardware::atsd_write(uint64_t hpa, uint64_t offset, std::span<const std::byte> in) {
  auto it = impl_->atsd.find(hpa);
  if (it == impl_->atsd.end()) return fail(kEINVAL);
  MutexLock lock(impl_->atsd_mutex);
  NV2PT_TRY(it->second.write(offset, in.data(), in.size()));
  const auto end = checked_add(offset, in.size());
  if (end && offset < kAtsdLaunch + 8 && *end > kAtsdLaunch) {
    // The shootdown completes at once: STATUS reads 0 (no invalidation pending).
    const uint64_t zero = 0;
    NV2PT_TRY(it->second.write(kAtsdStatus, &zero, sizeof zero));
  }
  return {};
}

HmiLog& Hardware::hmi_log() { return impl_->hmi_log; }

Result<void> Hardware::npu_map_lpar(const PciAddress& gpu, uint64_t lpid, uint64_t msr) {
  if (!impl_->gpu_bridges.contains(gpu) || impl_->gpu_bridges.at(gpu).empty()) return fail(kENODEV);
  MutexLock lock(impl_->opal_mutex);
  impl_->opal_calls.add({OpalNpuCall::kMapLpar, gpu, lpid, 0});
  impl_->opal_calls.add({OpalNpuCall::kInitContext, gpu, 0, msr});
  impl_->npu_lpids[gpu] = lpid;
  return {};
}

Result<void> Hardware::npu_unmap_lpar(const PciAddress& gpu) {
  if (!impl_->gpu_bridges.contains(gpu) || impl_->gpu_bridges.at(gpu).empty()) return fail(kENODEV);
  MutexLock lock(impl_->opal_mutex);
  impl_->opal_calls.add({OpalNpuCall::kDestroyContext, gpu, 0, 0});
  impl_->opal_calls.add({OpalNpuCall::kMapLpar, gpu, 0, 0});
  impl_->npu_lpids[gpu] = 0;
  return {};
}

uint64_t Hardware::npu_lpid(const PciAddress& gpu) const {
  MutexLock lock(impl_->opal_mutex);
  auto it = impl_->npu_lpids.find(gpu);
  return it == impl_->npu_lpids.end() ? 0 : it->second;
}

std::vector<Hardware::OpalNpuCall> Hardware::opal_npu_calls() const {
  MutexLock lock(impl_->opal_mutex);
  return impl_->opal_calls.entries();
}

void Hardware::set_hmi_policy(HmiPolicy policy) {
  impl_->policy.store(policy);
  for (auto& [address, ram] : impl_->rams) ram->set_policy(policy);
}

}  // namespace nv2pt::platform
