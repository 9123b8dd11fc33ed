// Machine::Builder: the device tree read into the machine's object graph, with every check a topology must pass.
#include "platform/machine.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <utility>

#include "base/checked.h"

namespace nv2pt::platform {

namespace {

constexpr uint64_t k64K = 64 * 1024;

// Why a typed read failed, in the words of a message ("ibm,gpu: missing").
std::string read_problem(Errno e) {
  switch (e.value) {
    case EINVAL: return "missing";
    case ENODATA: return "empty";
    case EOVERFLOW: return "too short";
    case EILSEQ: return "not a NUL-terminated string";
    default: return fmt::format("unreadable (errno {})", e.value);
  }
}

std::string hex(uint64_t v) { return fmt::format("{:#x}", v); }

}  // namespace

// Builds the object graph in dependency order: memory nodes and links first (bridges point at them), then
// PHBs and their functions, then the bridge and GPU cross-links, then the address-map checks.
class Machine::Builder {
 public:
  Builder(Machine& machine, bool validate) : m_(machine), t_(machine.tree_), validate_(validate) {}

  // The graph into the machine; the host driver binding of every function (parallel to functions_) back.
  TopologyResult<std::vector<std::string>> build() {
    for (auto step : {&Builder::load_chips, &Builder::load_memory, &Builder::load_links, &Builder::load_phbs,
                      &Builder::load_functions, &Builder::link_bridges, &Builder::link_gpus, &Builder::check_bridges,
                      &Builder::check_address_map}) {
      if (auto r = (this->*step)(); !r) return std::unexpected(r.error());
    }
    return std::move(drivers_);
  }

 private:
  std::unexpected<TopologyError> error(int node, std::string_view property, std::string_view problem) const {
    return topology_error(fmt::format("{}: {}: {}", t_.path(node), property, problem));
  }

  std::optional<uint32_t> optional_u32(int node, std::string_view property) const {
    auto v = t_.read_u32(node, property);
    return v ? std::optional<uint32_t>(*v) : std::nullopt;
  }

  // ibm,chip-id of the node or its nearest ancestor that has one.
  std::optional<uint32_t> chip_id_of(int node) const {
    for (std::optional<int> n = node; n; n = t_.parent(*n))
      if (auto id = optional_u32(*n, "ibm,chip-id")) return id;
    return std::nullopt;
  }

  TopologyResult<void> load_chips() {
    for (int node : t_.descendants(DeviceTree::kRoot)) {
      if (!t_.is_compatible(node, "ibm,xscom")) continue;
      if (auto id = optional_u32(node, "ibm,chip-id")) m_.chips_.push_back(Chip{*id, node});
    }
    std::ranges::sort(m_.chips_, {}, &Chip::id);
    return {};
  }

  TopologyResult<void> load_memory() {
    auto address_cells = optional_u32(DeviceTree::kRoot, "#address-cells");
    auto size_cells = optional_u32(DeviceTree::kRoot, "#size-cells");
    if (validate_ && (address_cells != 2u || size_cells != 2u))
      return error(DeviceTree::kRoot, "#address-cells", "the root must have #address-cells = <2> and #size-cells = <2>");

    for (int node : t_.children(DeviceTree::kRoot)) {
      auto type = t_.read_string(node, "device_type");
      if (!type || *type != "memory") continue;
      auto r = t_.is_compatible(node, "ibm,coherent-device-memory") ? load_gpu_memory(node) : load_host_memory(node);
      if (!r) return r;
    }
    std::ranges::sort(host_ranges_, {}, [](const auto& r) { return r.first.base; });
    for (const auto& [range, node] : host_ranges_) m_.host_memory_.push_back(range);
    return {};
  }

  TopologyResult<void> load_host_memory(int node) {
    auto reg = t_.property(node, "reg");
    if (!reg || reg->empty() || reg->size() % 16) {
      if (!validate_) return {};
      return error(node, "reg", fmt::format("expected <base size> pairs of u64 cells, found {} bytes", reg ? reg->size() : 0));
    }
    for (size_t i = 0; i < reg->size() / 16; ++i) {
      uint64_t base = *t_.read_u64_index(node, "reg", 2 * i);
      uint64_t size = *t_.read_u64_index(node, "reg", 2 * i + 1);
      if (!checked_add(base, size)) return error(node, "reg", fmt::format("base {} + size {} wraps", hex(base), hex(size)));
      if (size == 0) {
        if (validate_) return error(node, "reg", "size is 0");
        continue;
      }
      host_ranges_.emplace_back(MemoryRange{base, size}, node);
    }
    return {};
  }

  TopologyResult<void> load_gpu_memory(int node) {
    GpuMemory mem{.node = node};
    auto reg = t_.property(node, "reg");
    if (!reg || reg->size() != 16) {
      // The kernel wants exactly two u64 cells here (EINVAL otherwise); keep the node without a window.
      if (validate_)
        return error(node, "reg", fmt::format("expected <base size> as 2 u64 cells (16 bytes), found {} bytes",
                                              reg ? reg->size() : 0));
    } else {
      uint64_t base = *t_.read_u64_index(node, "reg", 0);
      uint64_t size = *t_.read_u64_index(node, "reg", 1);
      if (!checked_add(base, size)) return error(node, "reg", fmt::format("base {} + size {} wraps", hex(base), hex(size)));
      if (validate_ && size == 0) return error(node, "reg", "size is 0");
      if (validate_ && (!is_aligned(base, k64K) || !is_aligned(size, k64K)))
        return error(node, "reg", fmt::format("window {} size {} is not 64 KiB aligned", hex(base), hex(size)));
      mem.window = MemoryRange{base, size};
    }

    if (auto real = t_.property(node, "nv2pt,real-memory-size")) {
      if (real->size() != 8) {
        if (validate_) return error(node, "nv2pt,real-memory-size", fmt::format("expected one u64 (2 cells), found {} bytes", real->size()));
      } else {
        uint64_t size = *t_.read_u64(node, "nv2pt,real-memory-size");
        if (validate_ && size == 0) return error(node, "nv2pt,real-memory-size", "size is 0");
        if (validate_ && mem.window && size > mem.window->size)
          return error(node, "nv2pt,real-memory-size",
                       fmt::format("{} is larger than the window ({})", hex(size), hex(mem.window->size)));
        mem.real_size = size;
      }
    }
    mem.chip_id = optional_u32(node, "ibm,chip-id");
    if (auto assoc = t_.read_u32_array(node, "ibm,associativity"); assoc && assoc->size() >= 2)
      mem.associativity_id = assoc->back();

    memory_by_node_[node] = m_.gpu_memories_.size();
    m_.gpu_memories_.push_back(std::move(mem));
    return {};
  }

  TopologyResult<void> load_links() {
    for (int node : t_.descendants(DeviceTree::kRoot)) {
      if (!t_.is_compatible(node, "ibm,npu-link")) continue;
      NvlinkLink link{.node = node};
      link.chip_id = chip_id_of(node);
      link.index = optional_u32(node, "ibm,npu-link-index");
      if (validate_ && !link.index) return error(node, "ibm,npu-link-index", "missing");
      link.group_id = optional_u32(node, "ibm,npu-group-id");
      if (auto label = t_.read_string(node, "ibm,slot-label")) link.slot_label = *label;
      link_by_node_[node] = m_.links_.size();
      m_.links_.push_back(std::move(link));
    }
    return {};
  }

  TopologyResult<void> load_phbs() {
    std::map<uint32_t, int> node_by_domain;
    for (int node : t_.descendants(DeviceTree::kRoot)) {
      PhbKind kind;
      if (t_.is_compatible(node, "ibm,power9-npu-pciex"))
        kind = PhbKind::kNpu;
      else if (t_.is_compatible(node, "ibm,power9-pciex"))
        kind = PhbKind::kPcie;
      else
        continue;

      auto phbid = t_.read_u64(node, "ibm,opal-phbid");
      if (!phbid) return error(node, "ibm,opal-phbid", read_problem(phbid.error()) + " (it gives the PCI domain)");
      if (*phbid > UINT32_MAX) return error(node, "ibm,opal-phbid", fmt::format("{} is not a PCI domain", hex(*phbid)));
      uint32_t domain = static_cast<uint32_t>(*phbid);
      if (auto [it, inserted] = node_by_domain.emplace(domain, node); !inserted)
        return error(node, "ibm,opal-phbid", fmt::format("domain {:04x} is also used by {}", domain, t_.path(it->second)));

      Phb phb{.node = node, .kind = kind, .domain = domain, .chip_id = optional_u32(node, "ibm,chip-id")};
      if (t_.has_property(node, "ibm,supported-tce-sizes")) {
        auto sizes = t_.read_u32_array(node, "ibm,supported-tce-sizes");
        if (sizes)
          phb.tce_page_shifts = std::move(*sizes);
        else if (validate_)
          return error(node, "ibm,supported-tce-sizes", "expected a list of u32 page shifts");
      }
      if (t_.has_property(node, "ibm,mmio-atsd")) {
        auto atsd = t_.read_u64_array(node, "ibm,mmio-atsd");
        if (atsd)
          phb.atsd = std::move(*atsd);
        else if (validate_)
          return error(node, "ibm,mmio-atsd", "expected a list of u64 addresses (2 cells each)");
      }
      m_.phbs_.push_back(std::move(phb));
    }
    return {};
  }

  TopologyResult<void> load_functions() {
    struct Found {
      PciFunction function;
      std::string driver;
    };
    std::vector<Found> found;
    for (size_t p = 0; p < m_.phbs_.size(); ++p) {
      const Phb& phb = m_.phbs_[p];
      for (int node : t_.descendants(phb.node)) {
        if (!t_.has_property(node, "vendor-id")) continue;  // not a PCI function (no such node in our trees)
        auto reg = t_.property(node, "reg");
        if (!reg || reg->empty() || reg->size() % 20)
          return error(node, "reg", fmt::format("expected 5-cell PCI addresses (phys.hi first), found {} bytes",
                                                reg ? reg->size() : 0));
        PciFunction f{.address = PciAddress::from_phys_hi(phb.domain, *t_.read_u32(node, "reg")),
                      .node = node,
                      .phb = p};
        for (auto [property, field, limit] :
             {std::tuple{"vendor-id", &f.vendor_id, 0xffffu}, std::tuple{"device-id", &f.device_id, 0xffffu}}) {
          auto v = t_.read_u32(node, property);
          if (!v) return error(node, property, read_problem(v.error()));
          if (*v > limit) return error(node, property, fmt::format("{} does not fit 16 bits", hex(*v)));
          *field = static_cast<uint16_t>(*v);
        }
        auto class_code = t_.read_u32(node, "class-code");
        if (!class_code) return error(node, "class-code", read_problem(class_code.error()));
        f.class_code = *class_code & 0xffffff;
        f.revision = static_cast<uint8_t>(optional_u32(node, "revision-id").value_or(0));
        f.iommu_group = optional_u32(node, "nv2pt,iommu-group");
        if (validate_ && !f.iommu_group) return error(node, "nv2pt,iommu-group", "missing (every PCI function needs an IOMMU group)");
        if (auto loc = t_.read_string(node, "ibm,loc-code")) f.loc_code = *loc;

        std::string driver;
        if (t_.has_property(node, "nv2pt,driver")) {
          auto d = t_.read_string(node, "nv2pt,driver");
          if (d)
            driver = *d;
          else if (d.error() != Errno{ENODATA} && validate_)  // an empty property also means "no driver"
            return error(node, "nv2pt,driver", read_problem(d.error()));
        }

        if (phb.kind == PhbKind::kNpu)
          f.kind = PciFunctionKind::kNvlinkBridge;
        else if (t_.has_property(node, "ibm,npu") || (f.vendor_id == 0x10de && f.class_id() == 0x0302))
          f.kind = PciFunctionKind::kGpu;
        else
          f.kind = PciFunctionKind::kOther;
        found.push_back(Found{std::move(f), std::move(driver)});
      }
    }

    std::ranges::sort(found, {}, [](const Found& x) { return x.function.address; });
    for (size_t i = 1; i < found.size(); ++i) {
      if (found[i].function.address == found[i - 1].function.address)
        return error(found[i].function.node, "reg",
                     fmt::format("PCI address {} is also used by {}", found[i].function.address.to_string(),
                                 t_.path(found[i - 1].function.node)));
    }

    for (auto& [f, driver] : found) {
      size_t index = m_.functions_.size();
      if (f.kind == PciFunctionKind::kGpu) {
        f.role_index = m_.gpus_.size();
        gpu_by_node_[f.node] = m_.gpus_.size();
        m_.gpus_.push_back(Gpu{.function = index, .address = f.address, .node = f.node});
      } else if (f.kind == PciFunctionKind::kNvlinkBridge) {
        f.role_index = m_.bridges_.size();
        bridge_by_node_[f.node] = m_.bridges_.size();
        m_.bridges_.push_back(NvlinkBridge{.function = index, .address = f.address, .node = f.node, .phb = f.phb});
      } else {
        f.role_index = 0;
      }
      m_.functions_.push_back(std::move(f));
      drivers_.push_back(std::move(driver));
    }
    return {};
  }

  // Follows a one-phandle property to an object of the kind `targets` holds. nullopt when the property is
  // missing (check_bridges reports that later, after the GPU-level checks that explain more), or, without
  // validation, when it dangles or names the wrong kind of node.
  TopologyResult<std::optional<size_t>> follow(int node, std::string_view property, const std::map<int, size_t>& targets,
                                               std::string_view kind) const {
    auto phandle = t_.read_u32(node, property);
    if (!phandle) {
      if (validate_ && phandle.error() != kEINVAL) return error(node, property, read_problem(phandle.error()));
      return std::nullopt;
    }
    auto target = t_.resolve_phandle(*phandle);
    if (!target) {
      if (validate_) return error(node, property, fmt::format("phandle {} resolves to no node", hex(*phandle)));
      return std::nullopt;
    }
    auto it = targets.find(*target);
    if (it == targets.end()) {
      if (validate_)
        return error(node, property, fmt::format("phandle {} is {}, which is not {}", hex(*phandle), t_.path(*target), kind));
      return std::nullopt;
    }
    return it->second;
  }

  TopologyResult<void> link_bridges() {
    for (auto& b : m_.bridges_) {
      auto gpu = follow(b.node, "ibm,gpu", gpu_by_node_, "a GPU");
      if (!gpu) return std::unexpected(gpu.error());
      b.gpu = *gpu;
      auto memory = follow(b.node, "memory-region", memory_by_node_, "a GPU memory node (ibm,coherent-device-memory)");
      if (!memory) return std::unexpected(memory.error());
      b.memory = *memory;
      auto link = follow(b.node, "ibm,nvlink", link_by_node_, "an NVLink link node (ibm,npu-link)");
      if (!link) return std::unexpected(link.error());
      b.link = *link;

      if (auto tgt = t_.read_u64(b.node, "ibm,device-tgt-addr")) b.tgt = *tgt;
      if (auto speed = t_.read_u32(b.node, "ibm,nvlink-speed")) b.link_speed = *speed;
    }
    return {};
  }

  TopologyResult<void> link_gpus() {
    std::map<size_t, size_t> gpu_by_memory;
    for (size_t g = 0; g < m_.gpus_.size(); ++g) {
      Gpu& gpu = m_.gpus_[g];
      if (!t_.has_property(gpu.node, "ibm,npu")) continue;  // a PCIe GPU without NVLink
      auto phandles = t_.read_u32_array(gpu.node, "ibm,npu");
      if (!phandles) {
        if (validate_) return error(gpu.node, "ibm,npu", "expected a list of phandles");
        continue;
      }
      for (size_t k = 0; k < phandles->size(); ++k) {
        uint32_t phandle = (*phandles)[k];
        auto target = t_.resolve_phandle(phandle);
        auto it = target ? bridge_by_node_.find(*target) : bridge_by_node_.end();
        if (it == bridge_by_node_.end()) {
          if (!validate_) continue;
          return error(gpu.node, "ibm,npu",
                       target ? fmt::format("entry {}: phandle {} is {}, which is not an NVLink bridge", k, hex(phandle), t_.path(*target))
                              : fmt::format("entry {}: phandle {} resolves to no node", k, hex(phandle)));
        }
        const NvlinkBridge& b = m_.bridges_[it->second];
        if (validate_ && b.gpu != g)
          return error(gpu.node, "ibm,npu",
                       fmt::format("entry {}: {} does not point back (its ibm,gpu is {})", k, t_.path(b.node),
                                   b.gpu ? t_.path(m_.gpus_[*b.gpu].node) : "missing"));
        gpu.bridges.push_back(it->second);
      }
      if (!gpu.bridges.empty()) gpu.tgt = m_.bridges_[gpu.bridges[0]].tgt;
      for (size_t b : gpu.bridges) {
        if (m_.bridges_[b].memory) {
          gpu.memory = m_.bridges_[b].memory;
          break;
        }
      }
      if (!validate_) continue;

      if (!gpu.memory)
        return error(gpu.node, "ibm,npu", "no NVLink bridge of this GPU leads to a memory node (memory-region)");
      const NvlinkBridge& first = m_.bridges_[gpu.bridges[0]];
      for (size_t b : gpu.bridges) {
        const NvlinkBridge& other = m_.bridges_[b];
        if (other.memory && other.memory != gpu.memory)
          return error(other.node, "memory-region",
                       fmt::format("points to {}, but the GPU's first bridge with a memory-region points to {}",
                                   t_.path(m_.gpu_memories_[*other.memory].node),
                                   t_.path(m_.gpu_memories_[*gpu.memory].node)));
        if (other.tgt && gpu.tgt && other.tgt != gpu.tgt)
          return error(other.node, "ibm,device-tgt-addr",
                       fmt::format("{} differs from {} of {}, the GPU's NPU #0", hex(*other.tgt), hex(*gpu.tgt),
                                   t_.path(first.node)));
      }
      if (auto [it, inserted] = gpu_by_memory.emplace(*gpu.memory, g); !inserted)
        return error(first.node, "memory-region",
                     fmt::format("{} is already the memory of GPU {}", t_.path(m_.gpu_memories_[*gpu.memory].node),
                                 m_.gpus_[it->second].address.to_string()));
    }

    return {};
  }

  // What every bridge needs for pass-through to work, checked after the cross-links so that a problem that
  // involves several nodes is reported as such.
  TopologyResult<void> check_bridges() {
    if (!validate_) return {};
    for (const auto& b : m_.bridges_) {
      for (std::string_view property : {"ibm,gpu", "memory-region", "ibm,nvlink", "ibm,device-tgt-addr", "ibm,nvlink-speed"}) {
        if (!t_.has_property(b.node, property)) return error(b.node, property, "missing");
      }
      if (auto tgt = t_.property(b.node, "ibm,device-tgt-addr"); tgt->size() != 8)
        return error(b.node, "ibm,device-tgt-addr", fmt::format("expected one u64 (2 cells), found {} bytes", tgt->size()));
      if (!b.link_speed) return error(b.node, "ibm,nvlink-speed", "expected a u32");
      const Gpu& gpu = m_.gpus_[*b.gpu];
      if (std::ranges::find(gpu.bridges, b.function, [&](size_t i) { return m_.bridges_[i].function; }) == gpu.bridges.end())
        return error(b.node, "ibm,gpu", fmt::format("{} does not list this bridge in its ibm,npu", t_.path(gpu.node)));
    }
    return {};
  }

  TopologyResult<void> check_address_map() {
    if (!validate_) return {};
    struct Placed {
      MemoryRange range;
      int node;
    };
    std::vector<Placed> placed;
    for (const auto& [range, node] : host_ranges_) placed.push_back({range, node});
    for (const auto& mem : m_.gpu_memories_)
      if (mem.window) placed.push_back({*mem.window, mem.node});
    std::ranges::sort(placed, {}, [](const Placed& p) { return p.range.base; });
    for (size_t i = 1; i < placed.size(); ++i) {
      const auto& prev = placed[i - 1];
      const auto& cur = placed[i];
      if (ranges_overlap(prev.range.base, prev.range.size, cur.range.base, cur.range.size))
        return error(cur.node, "reg",
                     fmt::format("range {}..{} overlaps {} ({}..{})", hex(cur.range.base), hex(cur.range.end()),
                                 t_.path(prev.node), hex(prev.range.base), hex(prev.range.end())));
    }
    return {};
  }

  Machine& m_;
  const DeviceTree& t_;
  bool validate_;
  std::vector<std::string> drivers_;
  std::vector<std::pair<MemoryRange, int>> host_ranges_;  // with their memory@ node, for messages
  std::map<int, size_t> memory_by_node_, link_by_node_, gpu_by_node_, bridge_by_node_;
};

TopologyResult<Machine> Machine::load(DeviceTree tree, LoadOptions options) {
  Machine machine(std::move(tree));
  Builder builder(machine, options.validate);
  auto drivers = builder.build();
  if (!drivers) return std::unexpected(drivers.error());
  machine.set_drivers(std::move(*drivers));
  return machine;
}

}  // namespace nv2pt::platform
