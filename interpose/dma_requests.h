// Device DMA on request (NV2PT_DMA_REQUESTS): a test makes a passed-through GPU read or write at a bus address, as
// the real GPU would through its PHB, to check end to end that a guest's DMA address reaches the guest's page.
// The request file holds one request a line:
//   GROUP BUS_ADDR read LEN        translate, and read LEN bytes (at most 64) if the page is pinned RAM
//   GROUP BUS_ADDR write HEXBYTES  translate, and write the bytes (at most 64) if the page is pinned RAM
// GROUP is the IOMMU group, BUS_ADDR hex; the DMA goes through the group's first GPU (PHB4) PE, the path a GPU's
// own DMA takes. The file is executed and removed on the report signal; the results go to the file's name + ".json".
#pragma once

#include <nlohmann/json.hpp>

#include <string_view>

namespace nv2pt::mm {
class AddressSpace;
}
namespace nv2pt::vfio {
class Host;
}

namespace nv2pt::interpose {

// One result object per line: group, bus, op; hpa, ua (the TCE's user address), pinned_hpa (what the pinner gave
// that page), bytes (hex, read) or written (count); or error (errno name or a parse message).
nlohmann::json run_dma_requests(vfio::Host& host, mm::AddressSpace& as, std::string_view text);

}  // namespace nv2pt::interpose
