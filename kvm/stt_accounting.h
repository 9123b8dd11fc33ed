// Locked-memory charge of a KVM guest TCE table ("stt", KVM_CREATE_SPAPR_TCE_64): the guest TCE pages plus the
// descriptor with its page-pointer array (kvmppc_stt_pages, v5.x), charged in full even though pages are allocated
// on demand (v5.2+).
#pragma once

#include <cstdint>
#include <optional>

#include "base/checked.h"
#include "base/host_page.h"

namespace nv2pt::kvm {

// Size of the kernel's table descriptor before its page array; only ever moves the charge by one page.
inline constexpr uint64_t kSttDescriptorBytes = 128;

// 64 KiB host pages holding `entries` guest TCEs; nullopt if the byte count does not fit in 64 bits.
constexpr std::optional<uint64_t> stt_tce_pages(uint64_t entries) {
  const auto bytes = checked_mul(entries, 8);
  const auto rounded = bytes ? align_up(*bytes, kHostPageSize) : std::nullopt;
  if (!rounded) return std::nullopt;
  return *rounded / kHostPageSize;
}

// Pages charged to locked memory for a guest table of `entries` TCEs; nullopt on overflow.
constexpr std::optional<uint64_t> stt_charged_pages(uint64_t entries) {
  const auto tce_pages = stt_tce_pages(entries);
  if (!tce_pages) return std::nullopt;
  const auto array_bytes = checked_mul(*tce_pages, 8);
  const auto descriptor_bytes = array_bytes ? checked_add(kSttDescriptorBytes, *array_bytes) : std::nullopt;
  const auto descriptor = descriptor_bytes ? align_up(*descriptor_bytes, kHostPageSize) : std::nullopt;
  if (!descriptor) return std::nullopt;
  return checked_add(*tce_pages, *descriptor / kHostPageSize);
}

}  // namespace nv2pt::kvm
