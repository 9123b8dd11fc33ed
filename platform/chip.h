// A POWER9 chip (socket), known by its xscom node.
#pragma once

#include <cstdint>

namespace nv2pt::platform {

struct Chip {
  uint32_t id;  // ibm,chip-id: 0 and 8 on a 2-socket Witherspoon; address bits 42 and up (id << 42)
  int node;     // the xscom@ node
};

}  // namespace nv2pt::platform
