// The modelled host kernel's page size: 64 KiB, as on POWER9 server distributions (the machine running the model
// may use 4 KiB pages; registrations and locked-memory pages follow the model's size).
#pragma once

#include <cstdint>

namespace nv2pt {

inline constexpr unsigned kHostPageShift = 16;
inline constexpr uint64_t kHostPageSize = 1ull << kHostPageShift;

}  // namespace nv2pt
