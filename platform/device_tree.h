// A read-only view of a flattened device tree (FDT/DTB), the machine description nv2pt runs on.
//
// Nodes are named by their offset in the blob (libfdt's handle), which stays valid for the lifetime of the
// DeviceTree, also across moves. The typed readers follow the kernel's of_property_read_*() conventions, because
// the vfio layer reads NPU properties through them at device-open time exactly as the kernel does:
//   EINVAL     the property does not exist
//   ENODATA    the property exists but is empty
//   EOVERFLOW  the property is shorter than the value asked for
// Cells are big-endian 32-bit words; a u64 is two cells, high word first.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/errno.h"
#include "platform/topology_error.h"

namespace nv2pt::platform {

class DeviceTree {
 public:
  static constexpr int kRoot = 0;

  // Takes ownership of a DTB image; checks it completely (header, structure, strings) before accepting it.
  // `origin` names the source in messages (a file name, "embedded default topology").
  static TopologyResult<DeviceTree> from_blob(std::vector<uint8_t> blob, std::string origin);

  // `.dtb`: read as is. `.dts`: compiled with `dtc -I dts -O dtb` in a child process (dtc from $NV2PT_DTC, else
  // from PATH); its complaint ends up in the error message. Any other file name is an error.
  static TopologyResult<DeviceTree> load(const std::filesystem::path& file);

  // The built-in machine (topologies/witherspoon-6gpu.dts, compiled at build time).
  static DeviceTree embedded_default();

  const std::string& origin() const { return origin_; }
  std::span<const uint8_t> blob() const { return blob_; }

  // --- nodes ---
  std::optional<int> find_node(std::string_view path) const;  // "/pciex@6030200000000/pci@0,1"
  std::optional<int> resolve_phandle(uint32_t phandle) const;
  std::optional<int> parent(int node) const;  // nullopt for the root
  std::vector<int> children(int node) const;
  std::vector<int> descendants(int node) const;  // depth-first, `node` itself excluded
  std::string path(int node) const;                // for messages
  std::string_view name(int node) const;           // "pci@0,1"
  bool is_compatible(int node, std::string_view compatible) const;

  // --- properties ---
  bool has_property(int node, std::string_view name) const;
  // Raw bytes; nullopt when absent (an empty property gives an empty span).
  std::optional<std::span<const uint8_t>> property(int node, std::string_view name) const;
  Result<uint32_t> read_u32(int node, std::string_view name) const;               // first cell
  Result<uint64_t> read_u64(int node, std::string_view name) const;               // first two cells
  Result<uint32_t> read_u32_index(int node, std::string_view name, size_t index) const;
  Result<uint64_t> read_u64_index(int node, std::string_view name, size_t index) const;
  // The whole property as cells; EINVAL also when its length is not a whole number of cells.
  Result<std::vector<uint32_t>> read_u32_array(int node, std::string_view name) const;
  Result<std::vector<uint64_t>> read_u64_array(int node, std::string_view name) const;
  // The first string; EILSEQ if it is not NUL-terminated inside the property.
  Result<std::string_view> read_string(int node, std::string_view name) const;

 private:
  DeviceTree(std::vector<uint8_t> blob, std::string origin) : blob_(std::move(blob)), origin_(std::move(origin)) {}
  const void* fdt() const { return blob_.data(); }
  // The property's bytes if it holds at least `offset + length` bytes, else the kernel's error.
  Result<std::span<const uint8_t>> slice(int node, std::string_view name, size_t offset, size_t length) const;

  std::vector<uint8_t> blob_;
  std::string origin_;
};

}  // namespace nv2pt::platform
