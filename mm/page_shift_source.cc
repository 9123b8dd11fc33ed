#include "mm/page_shift_source.h"

#include <linux/magic.h>
#include <sys/vfs.h>

#include <algorithm>
#include <bit>
#include <cinttypes>
#include <cstdio>
#include <fstream>
#include <string>

#include "base/checked.h"
#include "base/host_page.h"

namespace nv2pt::mm {

namespace {

struct Vma {
  uint64_t start;
  uint64_t end;
  std::string path;
};

// "start-end perms offset dev inode   path" -> Vma; nullopt for other lines (smaps field lines).
std::optional<Vma> parse_vma_header(const std::string& line) {
  uint64_t start, end;
  char dash = 0;
  if (std::sscanf(line.c_str(), "%" SCNx64 "%c%" SCNx64, &start, &dash, &end) != 3 || dash != '-') return std::nullopt;
  // Skip the five fields before the path: range, perms, offset, dev, inode.
  size_t pos = 0;
  for (int field = 0; field < 5 && pos != std::string::npos; ++field) {
    pos = line.find_first_not_of(' ', pos);
    if (pos != std::string::npos) pos = line.find(' ', pos);
  }
  std::string path;
  if (pos != std::string::npos) {
    pos = line.find_first_not_of(' ', pos);
    if (pos != std::string::npos) path = line.substr(pos);
  }
  return Vma{start, end, std::move(path)};
}

bool looks_hugetlb(const Vma& vma) {
  if (vma.path.find("anon_hugepage") != std::string::npos) return true;
  if (vma.path.empty() || vma.path[0] != '/') return false;
  std::string path = vma.path;
  if (path.ends_with(" (deleted)")) return true;  // cannot statfs it; let smaps decide
  struct statfs fs{};
  return statfs(path.c_str(), &fs) == 0 && static_cast<uint64_t>(fs.f_type) == HUGETLBFS_MAGIC;
}

unsigned shift_of_kib(uint64_t kib) {
  if (kib == 0 || !std::has_single_bit(kib)) return kHostPageShift;
  return std::max<unsigned>(kHostPageShift, static_cast<unsigned>(std::countr_zero(kib)) + 10);
}

}  // namespace

std::vector<ShiftRun> ProcessPageShiftSource::page_shifts(uint64_t ua, uint64_t len) const {
  std::vector<ShiftRun> out;
  auto end = checked_add(ua, len);
  if (!end || len == 0) return out;

  bool any_huge = false;
  {
    std::ifstream maps("/proc/self/maps");
    std::string line;
    while (std::getline(maps, line)) {
      auto vma = parse_vma_header(line);
      if (!vma || vma->end <= ua) continue;
      if (vma->start >= *end) break;
      if (looks_hugetlb(*vma)) {
        any_huge = true;
        break;
      }
    }
  }
  if (!any_huge) return out;

  std::ifstream smaps("/proc/self/smaps");
  std::string line;
  std::optional<Vma> current;
  while (std::getline(smaps, line)) {
    if (auto vma = parse_vma_header(line)) {
      if (vma->start >= *end) break;  // smaps is generated as it is read: stop early
      current = vma->end > ua ? vma : std::nullopt;
      continue;
    }
    if (!current || !line.starts_with("KernelPageSize:")) continue;
    uint64_t kib = 0;
    std::sscanf(line.c_str() + 15, "%" SCNu64, &kib);
    unsigned shift = shift_of_kib(kib);
    if (shift > kHostPageShift) out.push_back({std::max(current->start, ua), std::min(current->end, *end), shift});
    current.reset();
  }
  return out;
}

void FixedPageShiftSource::set(uint64_t ua, uint64_t len, unsigned shift) {
  MutexLock lock(mu_);
  runs_[ua] = ShiftRun{ua, ua + len, shift};
}

void FixedPageShiftSource::clear() {
  MutexLock lock(mu_);
  runs_.clear();
}

std::vector<ShiftRun> FixedPageShiftSource::page_shifts(uint64_t ua, uint64_t len) const {
  MutexLock lock(mu_);
  std::vector<ShiftRun> out;
  const uint64_t end = ua + len;
  for (const auto& [start, run] : runs_) {
    if (run.end <= ua || run.start >= end) continue;
    out.push_back({std::max(run.start, ua), std::min(run.end, end), std::max(run.shift, kHostPageShift)});
  }
  return out;
}

}  // namespace nv2pt::mm
