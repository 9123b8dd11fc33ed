#include "cli/dtb_command.h"

#include <fmt/format.h>

#include "cli/format.h"

#include <memory>
#include <ostream>

namespace nv2pt::cli {

namespace {

using platform::DeviceTree;

std::string cells(const std::vector<uint32_t>& v) {
  std::string out;
  for (uint32_t c : v) out += (out.empty() ? "" : " ") + fmt::format("{}", c);
  return "<" + out + ">";
}

// "/pci@800000020000000/unknown-bridge@2 (phandle 0x12000010)", or the raw phandle if it resolves to nothing.
std::string ref(const DeviceTree& t, uint32_t phandle) {
  auto node = t.resolve_phandle(phandle);
  return node ? fmt::format("{} ({:#x})", t.path(*node), phandle) : fmt::format("{:#x} (dangling)", phandle);
}

std::string refs(const DeviceTree& t, int node, std::string_view prop) {
  auto raw = t.property(node, prop);
  if (!raw) return "missing";
  if (raw->empty()) return "empty";
  auto v = t.read_u32_array(node, prop);
  if (!v) return "malformed";
  std::string out;
  for (uint32_t p : *v) out += (out.empty() ? "" : ", ") + ref(t, p);
  return out;
}

std::string ids(const DeviceTree& t, int node) {
  auto vendor = t.read_u32(node, "vendor-id");
  auto device = t.read_u32(node, "device-id");
  if (!vendor || !device) return "";
  std::string loc;
  if (auto l = t.read_string(node, "ibm,loc-code")) loc = fmt::format(", loc-code \"{}\"", *l);
  return fmt::format(" [{:04x}:{:04x}{}]", *vendor, *device, loc);
}

}  // namespace

std::string format_guest_nvlink(const DeviceTree& t) {
  std::string out;
  std::vector<int> memories, npuphbs, phbs, gpus, bridges;
  for (int n : t.descendants(DeviceTree::kRoot)) {
    if (t.is_compatible(n, "ibm,coherent-device-memory")) memories.push_back(n);
    if (t.is_compatible(n, "ibm,power9-npu")) npuphbs.push_back(n);
    if (t.has_property(n, "ibm,mmio-atsd")) phbs.push_back(n);
    if (t.has_property(n, "ibm,npu")) gpus.push_back(n);
    if (t.has_property(n, "ibm,nvlink") || t.has_property(n, "ibm,device-tgt-addr")) bridges.push_back(n);
  }

  out += "GPU RAM (coherent device memory nodes):\n";
  if (memories.empty()) out += "  none: the guest gets no GPU RAM (no NVLink2 GPU was set up)\n";
  for (int n : memories) {
    out += fmt::format("  {}\n", t.path(n));
    auto reg = t.read_u64_array(n, "reg");
    if (reg && reg->size() >= 2)
      out += fmt::format("    address {:#x}, size {} ({:#x})\n", (*reg)[0], size_text((*reg)[1]), (*reg)[1]);
    auto usable = t.read_u64_array(n, "linux,usable-memory");
    if (usable && usable->size() >= 2)
      out += fmt::format("    usable at boot: {} (the guest hot-adds it: echo ADDR > /sys/devices/system/memory/probe)\n",
                         size_text((*usable)[1]));
    auto assoc = t.read_u32_array(n, "ibm,associativity");
    if (assoc && !assoc->empty())
      out += fmt::format("    NUMA node {} (ibm,associativity {})\n", assoc->back(), cells(*assoc));
    if (auto ph = t.read_u32(n, "phandle")) out += fmt::format("    phandle {:#x}\n", *ph);
  }

  out += "NPU link nodes:\n";
  if (npuphbs.empty()) out += "  none\n";
  for (int n : npuphbs) {
    out += fmt::format("  {} (ibm,power9-npu)\n", t.path(n));
    for (int link : t.children(n)) {
      auto index = t.read_u32(link, "ibm,npu-link-index");
      auto ph = t.read_u32(link, "phandle");
      out += fmt::format("    {}: ibm,npu-link-index {}, phandle {}\n", t.name(link),
                         index ? std::to_string(*index) : "missing", ph ? fmt::format("{:#x}", *ph) : "missing");
    }
  }

  out += "ATSD registers (ibm,mmio-atsd on the PHB):\n";
  if (phbs.empty()) out += "  none (no ATSD, or several IOMMU groups share a PHB)\n";
  for (int n : phbs) {
    auto atsd = t.read_u64_array(n, "ibm,mmio-atsd");
    std::string list;
    if (atsd)
      for (uint64_t a : *atsd) list += (list.empty() ? "" : ", ") + fmt::format("{:#x}", a);
    out += fmt::format("  {}: {}\n", t.path(n), list.empty() ? "empty" : list);
  }

  out += "GPUs:\n";
  if (gpus.empty()) out += "  none with ibm,npu\n";
  for (int n : gpus) {
    out += fmt::format("  {}{}\n", t.path(n), ids(t, n));
    if (auto ph = t.read_u32(n, "phandle")) out += fmt::format("    phandle {:#x}\n", *ph);
    out += fmt::format("    ibm,npu: {}\n", refs(t, n, "ibm,npu"));
  }

  out += "NVLink2 bridges:\n";
  if (bridges.empty()) out += "  none\n";
  for (int n : bridges) {
    out += fmt::format("  {}{}\n", t.path(n), ids(t, n));
    out += fmt::format("    ibm,gpu: {}\n", refs(t, n, "ibm,gpu"));
    out += fmt::format("    ibm,nvlink: {}\n", refs(t, n, "ibm,nvlink"));
    out += fmt::format("    memory-region: {}\n", refs(t, n, "memory-region"));
    auto tgt = t.read_u64(n, "ibm,device-tgt-addr");
    out += fmt::format("    ibm,device-tgt-addr: {}\n", tgt ? fmt::format("{:#x}", *tgt) : "missing");
    auto speed = t.read_u32(n, "ibm,nvlink-speed");
    out += fmt::format("    ibm,nvlink-speed: {}\n", speed ? fmt::format("{:#x}", *speed) : "missing");
  }

  if (auto rtas = t.find_node("/rtas")) {
    if (auto dom = t.read_u32_array(*rtas, "ibm,max-associativity-domains"); dom && !dom->empty())
      out += fmt::format("NUMA: /rtas ibm,max-associativity-domains {} (last cell: {} nodes incl. GPU RAM)\n",
                         cells(*dom), dom->back());
  }
  return out;
}

void register_dtb_command(CLI::App& app, Context& context) {
  auto file = std::make_shared<std::string>();
  CLI::App* dtb = app.add_subcommand("dtb", "Read a guest device tree (QEMU -machine dumpdtb=FILE)");
  dtb->require_subcommand(1);
  CLI::App* show = dtb->add_subcommand("show", "What the guest gets from NVLink2 pass-through, human-readable");
  show->add_option("file", *file, "The .dtb QEMU dumped")->required();
  show->callback([&context, file] {
    auto tree = DeviceTree::load(*file);
    if (!tree) return context.fail(tree.error().message);
    context.out << "Guest device tree " << *file << "\n" << format_guest_nvlink(*tree);
  });
}

}  // namespace nv2pt::cli
