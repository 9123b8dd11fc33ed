#include "cli/plan_command.h"

#include <fmt/format.h>

#include <bit>
#include <charconv>
#include <memory>
#include <nlohmann/json.hpp>
#include <ostream>

#include "base/checked.h"
#include "cli/format.h"

namespace nv2pt::cli {
namespace {

struct PlanOptions {
  std::string ram = "16G";
  std::vector<std::string> gpus;
  std::string gpu_map = "window";  // window | real
  std::vector<std::string> ranges;
  std::string page_size = "64K";
  std::string guest_page_size = "16M";
  std::string max_alloc = "16M";
  bool json = false;
};

std::optional<unsigned> page_shift_of(std::string_view text) {
  auto bytes = parse_size(text);
  if (!bytes || !std::has_single_bit(*bytes)) return std::nullopt;
  return static_cast<unsigned>(std::countr_zero(*bytes));
}

void run_plan(Context& context, const PlanOptions& o) {
  PlanInput in;
  auto page_shift = page_shift_of(o.page_size);
  if (!page_shift) return context.fail(fmt::format("--page-size: '{}' is not a power-of-two size", o.page_size));
  in.page_shift = *page_shift;
  auto guest_shift = page_shift_of(o.guest_page_size);
  if (!guest_shift)
    return context.fail(fmt::format("--guest-page-size: '{}' is not a power-of-two size", o.guest_page_size));
  in.guest_page_shift = *guest_shift;
  auto max_alloc = parse_size(o.max_alloc);
  if (!max_alloc || *max_alloc == 0) return context.fail(fmt::format("--max-alloc: '{}' is not a size", o.max_alloc));
  in.max_alloc_bytes = *max_alloc;
  auto ram = parse_size(o.ram);
  if (!ram) return context.fail(fmt::format("--ram: '{}' is not a size", o.ram));
  if (*ram) in.ranges.push_back({"guest RAM", 0, *ram});
  if (o.gpu_map != "window" && o.gpu_map != "real")
    return context.fail(fmt::format("--gpu-map: '{}' must be 'window' or 'real'", o.gpu_map));

  std::vector<std::string> gpus = o.gpus;
  if (gpus.empty() && o.ranges.empty()) {
    // No GPU named: the machine's last GPU. On the default machine that is the seed's example, 0035:05:00.0 at
    // 0x244000000000.
    const platform::Machine* m = context.machine();
    if (!m) return;
    if (!m->gpus().empty()) {
      in.default_gpu = m->gpus().back().address.to_string();
      gpus.push_back(in.default_gpu);
    }
  }
  if (!gpus.empty()) {
    const platform::Machine* m = context.machine();
    if (!m) return;
    for (const std::string& name : gpus) {
      auto address = platform::PciAddress::parse(name);
      const platform::Gpu* gpu = address ? m->find_gpu(*address) : nullptr;
      if (!gpu) return context.fail(fmt::format("--gpu: '{}' is not a GPU of this machine", name));
      const platform::GpuMemory* mem = m->memory_of(*gpu);
      if (!mem || !mem->window) return context.fail(fmt::format("--gpu: {} has no GPU RAM window", name));
      // As in the seed: GPU RAM sits at the same bus address as its host window.
      const uint64_t size = o.gpu_map == "real" ? mem->real_size.value_or(mem->window->size) : mem->window->size;
      in.ranges.push_back({"GPU " + name, mem->window->base, size});
    }
  }
  for (const std::string& r : o.ranges) {
    // NAME:START:SIZE
    const size_t a = r.find(':'), b = r.rfind(':');
    auto start = a != std::string::npos && b > a ? parse_size(r.substr(a + 1, b - a - 1)) : std::nullopt;
    auto size = b != std::string::npos ? parse_size(r.substr(b + 1)) : std::nullopt;
    if (!start || !size) return context.fail(fmt::format("--range: '{}' is not NAME:START:SIZE", r));
    in.ranges.push_back({r.substr(0, a), *start, *size});
  }
  if (in.ranges.empty()) return context.fail("nothing to map: give --ram, --gpu or --range");

  auto plan = make_plan(in);
  if (!plan) {
    return context.fail(
        "the layout is not valid: ranges must be non-empty, aligned to the IOMMU page, not overlapping and not "
        "wrapping; page sizes 4K..16G with the guest page at least the host page");
  }
  context.out << (o.json ? format_plan_json(*plan) + "\n" : format_plan(*plan));
}

}  // namespace

std::optional<uint64_t> parse_size(std::string_view text) {
  if (text.empty()) return std::nullopt;
  uint64_t value = 0;
  const char* begin = text.data();
  const char* end = text.data() + text.size();
  std::from_chars_result r;
  if (text.size() > 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X')) {
    r = std::from_chars(begin + 2, end, value, 16);
  } else {
    r = std::from_chars(begin, end, value, 10);
  }
  if (r.ec != std::errc() || r.ptr == begin) return std::nullopt;
  std::string_view suffix(r.ptr, end - r.ptr);
  unsigned shift = 0;
  if (!suffix.empty()) {
    switch (suffix[0]) {
      case 'K': case 'k': shift = 10; break;
      case 'M': case 'm': shift = 20; break;
      case 'G': case 'g': shift = 30; break;
      case 'T': case 't': shift = 40; break;
      default: return std::nullopt;
    }
    suffix.remove_prefix(1);
    if (!suffix.empty() && suffix != "B" && suffix != "iB" && suffix != "b") return std::nullopt;
  }
  return checked_shl(value, shift);
}

std::string format_plan(const Plan& p) {
  std::string out;
  const uint64_t page = 1ull << p.input.page_shift;
  if (!p.input.default_gpu.empty())
    out += fmt::format("No --gpu given: GPU {}, the last GPU of this machine.\n", p.input.default_gpu);
  out += fmt::format("Layout (IOMMU page {}):\n", size_figure(page));
  for (const PlanRange& r : p.input.ranges) {
    out += fmt::format("  {:<24} {:#016x} - {:#016x}  {}\n", r.name, r.start, r.start + r.size, size_figure(r.size));
  }
  out += fmt::format("TCEs the layout needs:           {} ({} entries)\n", size_figure(p.leaf_bytes_needed),
                     p.leaf_bytes_needed / 8);
  out += fmt::format("Exact-fit flat table to {:#x}: {} ({} bytes)\n", p.end, size_figure(p.exact_fit_flat_bytes),
                     p.exact_fit_flat_bytes);
  if (p.exact_fit_flat_bytes == 4882169856ull) {
    out += "  note: the seed (and kernel commit a68bd1267b72) says \"4556MB\" for this example; that is an\n"
           "  arithmetic slip: ((0x244000000000 + 0x2000000000) >> 16) * 8 = 4,882,169,856 bytes = 4656 MiB.\n";
  }
  out += fmt::format("Window the kernel creates:       2^{} = {} (windows are powers of two); a flat table of it "
                     "is {} (x2 with the user-address cache)\n",
                     std::countr_zero(p.window_size), size_figure(p.window_size), size_figure(p.pow2_flat_bytes));
  out += fmt::format("Largest contiguous allocation:   {}\n\n", size_figure(p.input.max_alloc_bytes));
  out += fmt::format("{:<7}{:<10}{:<34}{:>18}{:>14}{:>16}{:>8}\n", "levels", "block", "creation", "locked (charged)",
                     "at creation", "for the layout", "leaves");
  for (const LevelPlan& l : p.levels) {
    const std::string block = l.geometry ? size_figure(l.geometry->block_bytes()) : "-";
    const std::string creation = l.allowed ? "allowed" : l.refusal;
    out += fmt::format("{:<7}{:<10}{:<34}{:>18}{:>14}{:>16}{:>8}\n", l.levels, block, creation,
                       l.charged_bytes ? size_figure(l.charged_bytes) : "-",
                       l.allowed ? size_figure(l.allocated_at_creation) : "-",
                       l.allowed ? size_figure(l.allocated_for_layout) : "-",
                       l.allowed ? std::to_string(l.leaf_blocks_touched) : "-");
  }
  out += "(locked = every level of the table and its user-address cache, charged in full at creation;\n"
         " at creation / for the layout = level blocks really allocated, table + cache, with on-demand levels)\n\n";
  const KvmPlan& k = p.kvm;
  out += fmt::format("KVM: guest IOMMU pages of {} backed by host TCEs of {}\n", size_figure(1ull << k.guest_page_shift),
                     size_figure(1ull << k.host_page_shift));
  out += fmt::format("  host TCEs per guest TCE:        {}\n", k.subpages);
  out += fmt::format("  guest TCE table (window 2^{}):  {} entries, {} charged to locked memory, {} allocated "
                     "for the layout\n",
                     std::countr_zero(p.window_size), k.guest_entries, size_figure(k.guest_charged_bytes),
                     size_figure(k.guest_allocated_for_layout));
  out += fmt::format("  exact-fit flat guest table:     {}\n", size_figure(k.guest_exact_fit_flat_bytes));
  out += fmt::format("  one H_PUT_TCE_INDIRECT (512):   {} host TCEs per attached table\n",
                     k.host_tces_per_indirect_call);
  out += "  the host table is the one above (its page size is the host's)\n";
  return out;
}

std::string format_plan_json(const Plan& p) {
  nlohmann::json j;
  j["page_size"] = 1ull << p.input.page_shift;
  j["max_alloc_bytes"] = p.input.max_alloc_bytes;
  if (!p.input.default_gpu.empty()) j["default_gpu"] = p.input.default_gpu;
  for (const PlanRange& r : p.input.ranges) j["ranges"].push_back({{"name", r.name}, {"start", r.start}, {"size", r.size}});
  j["end"] = p.end;
  j["leaf_bytes_needed"] = p.leaf_bytes_needed;
  j["exact_fit_flat_bytes"] = p.exact_fit_flat_bytes;
  j["window_size"] = p.window_size;
  j["pow2_flat_bytes"] = p.pow2_flat_bytes;
  for (const LevelPlan& l : p.levels) {
    nlohmann::json e{{"levels", l.levels}, {"allowed", l.allowed}, {"charged_bytes", l.charged_bytes}};
    if (!l.allowed) e["refusal"] = l.refusal;
    if (l.geometry) {
      e["block_bytes"] = l.geometry->block_bytes();
      e["table_entries"] = l.geometry->size();
    }
    if (l.allowed) {
      e["allocated_at_creation"] = l.allocated_at_creation;
      e["allocated_for_layout"] = l.allocated_for_layout;
      e["leaf_blocks_touched"] = l.leaf_blocks_touched;
    }
    j["levels"].push_back(e);
  }
  const KvmPlan& k = p.kvm;
  j["kvm"] = {{"guest_page_size", 1ull << k.guest_page_shift},
              {"host_page_size", 1ull << k.host_page_shift},
              {"subpages", k.subpages},
              {"guest_entries", k.guest_entries},
              {"guest_charged_bytes", k.guest_charged_bytes},
              {"guest_allocated_for_layout", k.guest_allocated_for_layout},
              {"guest_exact_fit_flat_bytes", k.guest_exact_fit_flat_bytes},
              {"host_tces_per_indirect_call", k.host_tces_per_indirect_call}};
  return j.dump(2);
}

void register_plan_command(CLI::App& app, Context& context) {
  auto o = std::make_shared<PlanOptions>();
  CLI::App* plan = app.add_subcommand(
      "plan", "Size the DMA window and TCE tables for a guest layout, with the kernel's rules (default: 16 GiB of "
              "RAM at 0 and the machine's last GPU's window; on the default machine the seed's example, GPU "
              "0035:05:00.0's 128 GiB window at 0x244000000000)");
  plan->add_option("--ram", o->ram, "Guest RAM mapped at bus address 0 (0 for none)")->capture_default_str();
  plan->add_option("--gpu", o->gpus, "GPU (by address) whose RAM is mapped at its host window's address; repeatable");
  plan->add_option("--gpu-map", o->gpu_map, "Map each GPU's whole window or only its real RAM: window|real")
      ->capture_default_str();
  plan->add_option("--range", o->ranges, "Any other range, NAME:START:SIZE; repeatable");
  plan->add_option("--page-size", o->page_size, "Host IOMMU page size")->capture_default_str();
  plan->add_option("--guest-page-size", o->guest_page_size, "Guest IOMMU page size for the KVM case")
      ->capture_default_str();
  plan->add_option("--max-alloc", o->max_alloc, "Largest physically contiguous allocation of the host kernel")
      ->capture_default_str();
  plan->add_flag("--json", o->json, "Machine-readable output");
  plan->callback([&context, o] { run_plan(context, *o); });
}

}  // namespace nv2pt::cli
