#include "interpose/sysfs_view.h"

#include <sys/sysmacros.h>

#include <charconv>
#include <cstdio>
#include <functional>
#include <cstring>
#include <vector>

#include "vfio/host.h"

namespace nv2pt::interpose {

namespace {

constexpr std::string_view kPciDevices = "/sys/bus/pci/devices/";
constexpr std::string_view kIommuGroups = "/sys/kernel/iommu_groups/";
constexpr std::string_view kDevVfio = "/dev/vfio";
constexpr std::string_view kProcDt = "/proc/device-tree/";

std::vector<std::string_view> split(std::string_view s) {
  std::vector<std::string_view> parts;
  while (!s.empty()) {
    size_t slash = s.find('/');
    std::string_view part = s.substr(0, slash);
    if (!part.empty()) parts.push_back(part);
    if (slash == std::string_view::npos) break;
    s.remove_prefix(slash + 1);
  }
  return parts;
}

std::optional<int> parse_int(std::string_view s) {
  int v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || ptr != s.data() + s.size() || v < 0) return std::nullopt;
  return v;
}

Node dir(std::string path) { return Node{.kind = NodeKind::kDirectory, .path = std::move(path)}; }

Node symlink(std::string path, std::string link, std::string target) {
  return Node{.kind = NodeKind::kSymlink, .path = std::move(path), .link = std::move(link), .target = std::move(target)};
}

Node file(std::string path, std::string content) {
  return Node{.kind = NodeKind::kFile, .path = std::move(path), .content = std::move(content)};
}

std::string hex4(unsigned v) {
  char buf[16];
  snprintf(buf, sizeof buf, "0x%04x\n", v);
  return buf;
}

// /sys/bus/pci/devices/<bdf>[/attr]
std::optional<Node> lookup_pci(vfio::Host& host, const std::string& path) {
  std::vector<std::string_view> parts = split(std::string_view(path).substr(kPciDevices.size()));
  if (parts.empty() || parts.size() > 2) return std::nullopt;
  std::optional<platform::PciAddress> address = platform::PciAddress::parse(parts[0]);
  if (!address) return std::nullopt;
  const platform::PciFunction* f = host.machine().find_function(*address);
  if (!f) return std::nullopt;
  const std::string base = std::string(kPciDevices) + address->to_string();
  if (parts.size() == 1) return dir(base);
  const std::string_view attr = parts[1];
  if (attr == "iommu_group") {
    std::optional<int> group = host.iommu_group_of(*address);
    if (!group) return std::nullopt;
    return symlink(path, "../../../kernel/iommu_groups/" + std::to_string(*group),
                   std::string(kIommuGroups) + std::to_string(*group));
  }
  if (attr == "subsystem") return symlink(path, "../../../bus/pci", "/sys/bus/pci");
  if (attr == "driver") {
    std::string driver = host.machine().driver(*address).value_or("");
    if (driver.empty()) return std::nullopt;
    return symlink(path, "../../../bus/pci/drivers/" + driver, "/sys/bus/pci/drivers/" + driver);
  }
  // The 2019-era kernel printed devspec without a newline, and QEMU 7.2 does not strip one
  // (docs/qemu-7.2.md#devspec-newline).
  if (attr == "devspec") return file(path, host.devspec(*address));
  if (attr == "vendor") return file(path, hex4(f->vendor_id));
  if (attr == "device") return file(path, hex4(f->device_id));
  if (attr == "class") {
    char buf[16];
    snprintf(buf, sizeof buf, "0x%06x\n", f->class_code);
    return file(path, buf);
  }
  return std::nullopt;
}

// /sys/kernel/iommu_groups/<n>[/devices[/<bdf>]]
std::optional<Node> lookup_group_dir(vfio::Host& host, const std::string& path) {
  std::vector<std::string_view> parts = split(std::string_view(path).substr(kIommuGroups.size()));
  if (parts.empty() || parts.size() > 3) return std::nullopt;
  std::optional<int> id = parse_int(parts[0]);
  if (!id || !host.group(*id)) return std::nullopt;
  if (parts.size() == 1) return dir(path);
  if (parts[1] != "devices") return std::nullopt;
  if (parts.size() == 2) return dir(path);
  std::optional<platform::PciAddress> address = platform::PciAddress::parse(parts[2]);
  if (!address || host.iommu_group_of(*address) != *id) return std::nullopt;
  return symlink(path, "../../../../bus/pci/devices/" + address->to_string(),
                 std::string(kPciDevices) + address->to_string());
}

// /dev/vfio, /dev/vfio/vfio, /dev/vfio/<n>
std::optional<Node> lookup_dev_vfio(vfio::Host& host, const std::string& path) {
  if (path == kDevVfio) return dir(path);
  std::string_view name = std::string_view(path).substr(kDevVfio.size() + 1);
  if (name == "vfio") return Node{.kind = NodeKind::kVfioControl, .path = path, .writable = true};
  std::optional<int> id = parse_int(name);
  if (!id || !host.group(*id)) return std::nullopt;
  return Node{.kind = NodeKind::kVfioGroup, .path = path, .group = *id, .writable = true};
}

// /proc/device-tree<devspec>[/ibm,loc-code]: only the nodes of the machine's PCI functions.
std::optional<Node> lookup_proc_dt(vfio::Host& host, const std::string& path) {
  std::string_view rest = std::string_view(path).substr(kProcDt.size() - 1);  // keeps the leading '/'
  constexpr std::string_view kLoc = "/ibm,loc-code";
  const bool loc = rest.ends_with(kLoc);
  if (loc) rest.remove_suffix(kLoc.size());
  for (const platform::PciFunction& f : host.machine().pci_functions()) {
    if (host.devspec(f.address) != rest) continue;
    if (!loc) return dir(path);
    std::string code = host.loc_code(f.address);
    if (code.empty()) return std::nullopt;
    // An OF string property as the kernel's /proc/device-tree file shows it: the bytes including the NUL.
    code.push_back('\0');
    return file(path, std::move(code));
  }
  return std::nullopt;
}

}  // namespace

std::optional<std::string> normalize_path(std::string_view path) {
  if (path.empty() || path[0] != '/') return std::nullopt;
  std::string out;
  out.reserve(path.size());
  for (std::string_view part : split(path)) {
    if (part == ".") continue;
    if (part == "..") return std::nullopt;
    out += '/';
    out += part;
  }
  if (out.empty()) out = "/";
  return out;
}

Namespace classify(std::string_view p) {
  if (p.size() < 9) return Namespace::kNone;
  switch (p[1]) {
    case 's':
      if (p.starts_with(kPciDevices) && p.size() > kPciDevices.size()) return Namespace::kSysPci;
      if (p.starts_with(kIommuGroups) && p.size() > kIommuGroups.size()) return Namespace::kSysIommuGroups;
      return Namespace::kNone;
    case 'd':
      if (p.starts_with(kDevVfio) && (p.size() == kDevVfio.size() || p[kDevVfio.size()] == '/'))
        return Namespace::kDevVfio;
      return Namespace::kNone;
    case 'p':
      if (p.starts_with(kProcDt) && p.size() > kProcDt.size()) return Namespace::kProcDeviceTree;
      return Namespace::kNone;
    default:
      return Namespace::kNone;
  }
}

std::optional<Node> lookup(vfio::Host& host, Namespace ns, const std::string& normalized) {
  switch (ns) {
    case Namespace::kSysPci: return lookup_pci(host, normalized);
    case Namespace::kSysIommuGroups: return lookup_group_dir(host, normalized);
    case Namespace::kDevVfio: return lookup_dev_vfio(host, normalized);
    case Namespace::kProcDeviceTree: return lookup_proc_dt(host, normalized);
    case Namespace::kNone: break;
  }
  return std::nullopt;
}

void fill_stat(const Node& node, struct stat& st, bool follow) {
  std::memset(&st, 0, sizeof st);
  // A stable inode number per path, so tools that compare (dev, ino) see distinct files.
  st.st_ino = std::hash<std::string>{}(node.path) | 1;
  st.st_dev = 0x6e7632;  // "nv2"
  st.st_blksize = 4096;
  switch (node.kind) {
    case NodeKind::kDirectory:
      st.st_mode = S_IFDIR | 0755;
      st.st_nlink = 2;
      break;
    case NodeKind::kSymlink:
      // Every emulated link points at a directory.
      st.st_mode = follow ? (S_IFDIR | 0755) : (S_IFLNK | 0777);
      st.st_nlink = follow ? 2 : 1;
      st.st_size = follow ? 0 : static_cast<off_t>(node.link.size());
      break;
    case NodeKind::kFile:
      st.st_mode = S_IFREG | 0444;
      st.st_nlink = 1;
      st.st_size = static_cast<off_t>(node.content.size());
      break;
    case NodeKind::kVfioControl:
    case NodeKind::kVfioGroup:
      st.st_mode = S_IFCHR | 0666;
      st.st_nlink = 1;
      st.st_rdev = makedev(10, node.kind == NodeKind::kVfioControl ? 196 : 240 + node.group);
      break;
  }
}

}  // namespace nv2pt::interpose
