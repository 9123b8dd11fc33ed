#include "cli/format.h"

#include <fmt/format.h>

namespace nv2pt::cli {
namespace {
constexpr uint64_t kKiB = 1ull << 10, kMiB = 1ull << 20, kGiB = 1ull << 30, kTiB = 1ull << 40;
}  // namespace

std::string size_text(uint64_t bytes) {
  if (bytes && bytes % kTiB == 0) return fmt::format("{} TiB", bytes / kTiB);
  if (bytes && bytes % kGiB == 0) return fmt::format("{} GiB", bytes / kGiB);
  if (bytes && bytes % kMiB == 0) return fmt::format("{} MiB", bytes / kMiB);
  if (bytes && bytes % kKiB == 0) return fmt::format("{} KiB", bytes / kKiB);
  return fmt::format("{} bytes", bytes);
}

std::string size_figure(uint64_t bytes) {
  if (bytes < kMiB || bytes % kMiB == 0) return size_text(bytes);
  std::string text = fmt::format("{:.4f}", static_cast<double>(bytes) / kMiB);
  while (text.back() == '0') text.pop_back();
  return text + " MiB";
}

}  // namespace nv2pt::cli
