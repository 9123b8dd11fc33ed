// Locked-memory charge of a KVM guest TCE table ("stt", KVM_CREATE_SPAPR_TCE_64): the guest TCE pages plus the
// descriptor with its page-pointer array (kvmppc_stt_pages, v5.x), charged in full even though pages are allocated
// on demand (v5.2+).
#pragma once

#include <cstdint>

#include "base/host_page.h"

namespace nv2pt::kvm {

// Size of the kernel's table descriptor before its page array; only ever moves the charge by one page.
inline constexpr uint64_t kSttDescriptorBytes = 128;

// 64 KiB host pages holding `entries` guest TCEs.
constexpr uint64_t stt_tce_pages(uint64_t entries) {
  return (entries * 8 + kHostPageSize - 1) / kHostPageSize;
}

// Pages charged to locked memory for a guest table of `entries` TCEs.
constexpr uint64_t stt_charged_pages(uint64_t entries) {
  const uint64_t tce_pages = stt_tce_pages(entries);
  const uint64_t descriptor_bytes = kSttDescriptorBytes + tce_pages * 8;
  return tce_pages + (descriptor_bytes + kHostPageSize - 1) / kHostPageSize;
}

}  // namespace nv2pt::kvm
