// One NVLink brick of an NPU (a "ibm,npu-link" node under xscom/npu@).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace nv2pt::platform {

struct NvlinkLink {
  int node;
  std::optional<uint32_t> chip_id;   // of the enclosing xscom node
  std::optional<uint32_t> index;     // ibm,npu-link-index, 0..5: selects the bridge's ATSD block
  std::optional<uint32_t> group_id;  // ibm,npu-group-id: the GPU (0..2 in the Sequoia layout)
  std::string slot_label;            // ibm,slot-label
};

}  // namespace nv2pt::platform
