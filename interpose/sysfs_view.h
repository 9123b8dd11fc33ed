// The host-kernel file system a VFIO client looks at, as far as the modelled machine is concerned: the sysfs PCI
// device directories, the IOMMU group directories, /dev/vfio and /proc/device-tree's loc-codes.
//
// Paths are recognised in two steps. classify() is purely syntactic and cheap (a few prefix compares); only a
// path that may be ours makes the caller create the Host and ask lookup(), which answers from the machine. A path
// under /sys/bus/pci/devices/ naming a device the machine does not have is not ours: it goes to the real kernel
// (the real machine's own devices). Under /dev/vfio/ everything is ours, so nothing there reaches the real kernel.
#pragma once

#include <sys/stat.h>

#include <optional>
#include <string>
#include <string_view>

#include "platform/pci_address.h"

namespace nv2pt::vfio {
class Host;
}

namespace nv2pt::interpose {

// What a path names.
enum class NodeKind {
  kDirectory,
  kSymlink,      // `link` is the readlink() text, `target` the absolute path it resolves to
  kFile,         // `content` is what read() returns
  kVfioControl,  // /dev/vfio/vfio
  kVfioGroup,    // /dev/vfio/<group>
};

struct Node {
  NodeKind kind;
  std::string path;     // normalised absolute path
  std::string link;     // kSymlink
  std::string target;   // kSymlink: the normalised absolute path the link points to
  std::string content;  // kFile
  int group = -1;       // kVfioGroup
  bool writable = false;
};

enum class Namespace { kNone, kSysPci, kSysIommuGroups, kDevVfio, kProcDeviceTree };

// Collapses "//", drops "." components and a trailing "/". nullopt for a relative path or one with "..": those are
// never ours (QEMU builds absolute paths).
std::optional<std::string> normalize_path(std::string_view path);

// The cheap syntactic test: which emulated namespace a normalised path falls into.
Namespace classify(std::string_view normalized);

// What `normalized` (in namespace `ns`) is on the emulated host; nullopt when the host has no such object. For
// kDevVfio, nullopt means ENOENT (the path still must not reach the real kernel: see owns_absent()).
std::optional<Node> lookup(vfio::Host& host, Namespace ns, const std::string& normalized);

// Whether a path the host does not have must still be answered with ENOENT rather than passed to the real kernel.
inline bool owns_absent(Namespace ns) { return ns == Namespace::kDevVfio; }

// stat() of a node: a directory, symlink (for lstat), character device or regular file, owned by root.
void fill_stat(const Node& node, struct stat& st, bool follow);

}  // namespace nv2pt::interpose
