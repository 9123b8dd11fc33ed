// The default machine's DTB, compiled from topologies/witherspoon-6gpu.dts by dtc at build time and embedded
// into the library (the generated embedded_topology_data.cc defines it).
#pragma once

#include <cstdint>
#include <span>

namespace nv2pt::platform {

std::span<const uint8_t> default_topology_dtb();

}  // namespace nv2pt::platform
