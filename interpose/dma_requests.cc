#include "interpose/dma_requests.h"

#include <fmt/format.h>

#include <charconv>
#include <sstream>
#include <vector>

#include "base/errno.h"
#include "iommu/pe.h"
#include "iommu/table_group.h"
#include "mm/address_space.h"
#include "vfio/group.h"
#include "vfio/host.h"

namespace nv2pt::interpose {

namespace {

using nlohmann::json;

constexpr size_t kMaxBytes = 64;

std::string hex(uint64_t v) { return fmt::format("{:#x}", v); }

std::optional<uint64_t> parse_u64(std::string_view s, int base) {
  if (base == 16 && (s.starts_with("0x") || s.starts_with("0X"))) s.remove_prefix(2);
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v, base);
  if (s.empty() || ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

std::optional<std::vector<std::byte>> parse_bytes(std::string_view s) {
  if (s.starts_with("0x")) s.remove_prefix(2);
  if (s.empty() || s.size() % 2 || s.size() / 2 > kMaxBytes) return std::nullopt;
  std::vector<std::byte> out;
  for (size_t i = 0; i < s.size(); i += 2) {
    auto b = parse_u64(s.substr(i, 2), 16);
    if (!b) return std::nullopt;
    out.push_back(static_cast<std::byte>(*b));
  }
  return out;
}

const iommu::Pe* gpu_pe(vfio::Host& host, int group_id) {
  vfio::Group* g = host.group(group_id);
  if (!g || !g->table_group()) return nullptr;
  for (const iommu::Pe* pe : g->table_group()->members())
    if (pe->kind() == iommu::Pe::Kind::kPhb4) return pe;
  return nullptr;
}

json run_one(vfio::Host& host, mm::AddressSpace& as, std::string_view line) {
  std::istringstream in{std::string(line)};
  std::string group_s, bus_s, op, arg;
  in >> group_s >> bus_s >> op >> arg;
  json r = {{"request", std::string(line)}};
  const auto group = parse_u64(group_s, 10);
  const auto bus = parse_u64(bus_s, 16);
  const bool write = op == "write";
  if (!group || !bus || (op != "read" && op != "write") || arg.empty()) {
    r["error"] = "expected: GROUP BUS_ADDR read LEN | GROUP BUS_ADDR write HEXBYTES";
    return r;
  }
  r["group"] = *group;
  r["bus"] = hex(*bus);
  r["op"] = op;
  const iommu::Pe* pe = gpu_pe(host, static_cast<int>(*group));
  if (!pe) {
    r["error"] = "no GPU PE in that group";
    return r;
  }
  auto hpa = pe->translate(*bus, write);
  if (!hpa) {
    r["error"] = std::string(errno_name(hpa.error()));
    return r;
  }
  r["hpa"] = hex(*hpa);
  if (const iommu::TceTable* t = pe->window_at(*bus); t && t->has_userspace_cache()) {
    const uint64_t offset = *bus & (t->page_size() - 1);
    if (const uint64_t ua = t->cached_ua((*bus - t->bus_start()) >> t->page_shift())) {
      r["ua"] = hex(ua + offset);
      if (auto pinned = as.pinner().ua_to_hpa(ua + offset)) r["pinned_hpa"] = hex(*pinned);
    }
  }
  if (write) {
    auto bytes = parse_bytes(arg);
    if (!bytes) {
      r["error"] = fmt::format("write needs 1 to {} bytes in hex", kMaxBytes);
      return r;
    }
    if (auto w = as.pinner().dma_write(*hpa, *bytes); !w) r["error"] = std::string(errno_name(w.error()));
    else r["written"] = bytes->size();
  } else {
    auto len = parse_u64(arg, 10);
    if (!len || *len == 0 || *len > kMaxBytes) {
      r["error"] = fmt::format("read needs a length of 1 to {}", kMaxBytes);
      return r;
    }
    std::vector<std::byte> buf(*len);
    if (auto rd = as.pinner().dma_read(*hpa, buf); !rd) {
      r["error"] = std::string(errno_name(rd.error()));
    } else {
      std::string s;
      for (std::byte b : buf) s += fmt::format("{:02x}", static_cast<unsigned>(b));
      r["bytes"] = s;
    }
  }
  return r;
}

}  // namespace

json run_dma_requests(vfio::Host& host, mm::AddressSpace& as, std::string_view text) {
  json out = json::array();
  while (!text.empty()) {
    const size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    out.push_back(run_one(host, as, line));
  }
  return out;
}

}  // namespace nv2pt::interpose
