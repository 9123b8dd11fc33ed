#include "cli/lspci_command.h"

#include <fmt/format.h>

#include "cli/format.h"

#include <memory>
#include <ostream>

#include "cli/pci_names.h"
#include "platform/nvlink.h"

namespace nv2pt::cli {

namespace {

using platform::Machine;
using platform::PciFunction;

std::string address_hex(uint64_t v) { return fmt::format("0x{:016x}", v); }

template <class T, class F>
std::string or_missing(const std::optional<T>& v, F&& format) {
  return v ? format(*v) : std::string("missing");
}

std::string driver_text(const Machine& m, const PciFunction& f) {
  auto driver = m.driver(f.address).value_or("");
  return driver.empty() ? "none" : driver;
}

void gpu_details(const Machine& m, const platform::Gpu& gpu, std::string& out) {
  const platform::GpuMemory* mem = m.memory_of(gpu);
  if (!mem) {
    out += "\tGPU RAM: none (no NVLink bridge leads to a memory node)\n";
  } else {
    out += fmt::format("\tGPU RAM window: {}\n",
                       or_missing(mem->window, [](const platform::MemoryRange& w) {
                         return fmt::format("base {}, size {}", address_hex(w.base), size_text(w.size));
                       }));
    uint64_t real = mem->real_size.value_or(mem->window ? mem->window->size : 0);
    out += fmt::format("\tGPU RAM real size: {}\n", mem->real_size || mem->window ? size_text(real) : "unknown");
    out += fmt::format("\tNUMA node (ibm,associativity): {}\n",
                       or_missing(mem->associativity_id, [](uint32_t id) { return std::to_string(id); }));
  }
  out += fmt::format("\tTGT: {}\n", or_missing(gpu.tgt, address_hex));
  std::string bridges;
  for (size_t b : gpu.bridges) bridges += (bridges.empty() ? "" : ", ") + m.bridges()[b].address.to_string();
  out += fmt::format("\tNVLink bridges: {}\n", bridges.empty() ? "none" : bridges);
}

void bridge_details(const Machine& m, const platform::NvlinkBridge& bridge, std::string& out) {
  const platform::Gpu* gpu = m.gpu_of(bridge);
  out += fmt::format("\tGPU: {}\n", gpu ? gpu->address.to_string() : "none");
  const platform::NvlinkLink* link = m.link_of(bridge);
  if (!link) {
    out += "\tNVLink: missing\n";
  } else {
    out += fmt::format("\tNVLink: link index {}, group {}\n",
                       or_missing(link->index, [](uint32_t i) { return std::to_string(i); }),
                       or_missing(link->group_id, [](uint32_t i) { return std::to_string(i); }));
  }
  out += fmt::format("\tLink speed: {}\n", or_missing(bridge.link_speed, [](uint32_t s) {
                       auto name = platform::nvlink_speed_name(s);
                       return fmt::format("{:#x} ({})", s, name ? *name : "unknown");
                     }));
  out += fmt::format("\tTGT: {}\n", or_missing(bridge.tgt, address_hex));
  out += fmt::format("\tATSD: {}\n", or_missing(m.atsd_address(bridge), address_hex));
}

}  // namespace

std::string format_lspci(const Machine& m, const LspciOptions& options) {
  std::string out;
  for (const PciFunction& f : m.pci_functions()) {
    out += fmt::format("{} {} {}: {} {}", f.iommu_group ? std::to_string(*f.iommu_group) : "-", f.address.to_string(),
                       pci_class_name(f.class_id()), pci_vendor_name(f.vendor_id), pci_device_name(f.vendor_id, f.device_id));
    if (f.revision) out += fmt::format(" (rev {:02x})", f.revision);  // lspci leaves out revision 0
    out += "\n";
    if (!options.verbose) continue;

    if (f.kind == platform::PciFunctionKind::kGpu) gpu_details(m, m.gpus()[f.role_index], out);
    if (f.kind == platform::PciFunctionKind::kNvlinkBridge) bridge_details(m, m.bridges()[f.role_index], out);
    out += fmt::format("\tHost driver: {}\n", driver_text(m, f));
    if (!f.loc_code.empty()) out += fmt::format("\tLocation: {}\n", f.loc_code);
    out += fmt::format("\tDevice-tree node: {}\n", m.device_tree().path(f.node));
  }
  return out;
}

void register_lspci_command(CLI::App& app, Context& context) {
  auto options = std::make_shared<LspciOptions>();
  CLI::App* lspci = app.add_subcommand("lspci", "List the PCI functions with their IOMMU groups, sorted by address");
  lspci->add_flag("-v,--verbose", options->verbose,
                  "Add GPU RAM windows, TGTs, NVLink links and speeds, ATSD addresses and host drivers");
  lspci->callback([&context, options] {
    if (const Machine* m = context.machine()) context.out << format_lspci(*m, *options);
  });
}

}  // namespace nv2pt::cli
