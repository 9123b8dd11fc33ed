#include "platform/device_tree.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>
#include <libfdt.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>

#include "base/log.h"
#include "platform/embedded_topology.h"

extern char** environ;

namespace nv2pt::platform {

namespace {

constexpr Errno kENODATA{ENODATA};
constexpr Errno kEOVERFLOW{EOVERFLOW};
constexpr Errno kEILSEQ{EILSEQ};

uint32_t be32(const uint8_t* p) {
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | uint32_t{p[3]};
}

uint64_t be64(const uint8_t* p) { return uint64_t{be32(p)} << 32 | be32(p + 4); }

TopologyResult<std::vector<uint8_t>> read_file(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return topology_error(fmt::format("{}: cannot open: {}", file.string(), std::strerror(errno)));
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) return topology_error(fmt::format("{}: read error", file.string()));
  return bytes;
}

// An anonymous in-memory file for a child's output: no pipe to drain while waiting, no temp file to clean up.
struct MemFd {
  int fd = -1;
  explicit MemFd(const char* name) : fd(memfd_create(name, MFD_CLOEXEC)) {}
  ~MemFd() {
    if (fd >= 0) close(fd);
  }
  MemFd(const MemFd&) = delete;
  MemFd& operator=(const MemFd&) = delete;

  std::vector<uint8_t> contents() const {
    std::vector<uint8_t> out;
    off_t size = lseek(fd, 0, SEEK_END);
    if (size <= 0) return out;
    out.resize(static_cast<size_t>(size));
    size_t done = 0;
    while (done < out.size()) {
      ssize_t n = pread(fd, out.data() + done, out.size() - done, static_cast<off_t>(done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      done += static_cast<size_t>(n);
    }
    out.resize(done);
    return out;
  }
};

// dtc's stderr, trimmed to something that fits in one error message.
std::string complaint_of(const std::vector<uint8_t>& err) {
  std::string text(err.begin(), err.end());
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  constexpr size_t kMax = 2000;
  if (text.size() > kMax) text = text.substr(0, kMax) + " ...";
  return text.empty() ? "no message" : text;
}

TopologyResult<std::vector<uint8_t>> compile_dts(const std::filesystem::path& file) {
  const char* dtc_env = std::getenv("NV2PT_DTC");
  std::string dtc = dtc_env && *dtc_env ? dtc_env : "dtc";
  std::string input = file.string();
  std::string include_dir = file.has_parent_path() ? file.parent_path().string() : ".";

  // Check the file ourselves first: "cannot open" reads better than dtc's FATAL line.
  if (access(input.c_str(), R_OK) != 0)
    return topology_error(fmt::format("{}: cannot open: {}", input, std::strerror(errno)));

  MemFd out("nv2pt-dtc-out"), err("nv2pt-dtc-err");
  if (out.fd < 0 || err.fd < 0)
    return topology_error(fmt::format("{}: cannot compile: memfd_create: {}", input, std::strerror(errno)));

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out.fd, STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, err.fd, STDERR_FILENO);
  std::vector<std::string> args = {dtc, "-I", "dts", "-O", "dtb", "-i", include_dir, "-o", "-", input};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  pid_t pid;
  int rc = posix_spawnp(&pid, dtc.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0)
    return topology_error(fmt::format("{}: cannot run the device-tree compiler '{}': {}", input, dtc,
                                      std::strerror(rc)));
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR)
      return topology_error(fmt::format("{}: waiting for '{}': {}", input, dtc, std::strerror(errno)));
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    // posix_spawnp reports a missing program through exit status 127 on glibc.
    if (WIFEXITED(status) && WEXITSTATUS(status) == 127 && err.contents().empty())
      return topology_error(fmt::format("{}: cannot run the device-tree compiler '{}'", input, dtc));
    return topology_error(fmt::format("{}: dtc failed: {}", input, complaint_of(err.contents())));
  }
  return out.contents();
}

}  // namespace

TopologyResult<DeviceTree> DeviceTree::from_blob(std::vector<uint8_t> blob, std::string origin) {
  if (blob.size() < sizeof(fdt_header))
    return topology_error(fmt::format("{}: not a device-tree blob ({} bytes)", origin, blob.size()));
  if (int rc = fdt_check_full(blob.data(), blob.size()); rc != 0)
    return topology_error(fmt::format("{}: not a valid device-tree blob: {}", origin, fdt_strerror(rc)));
  blob.resize(fdt_totalsize(blob.data()));
  return DeviceTree(std::move(blob), std::move(origin));
}

TopologyResult<DeviceTree> DeviceTree::load(const std::filesystem::path& file) {
  auto ext = file.extension().string();
  if (ext == ".dtb") {
    auto bytes = read_file(file);
    if (!bytes) return std::unexpected(bytes.error());
    return from_blob(std::move(*bytes), file.string());
  }
  if (ext == ".dts") {
    auto bytes = compile_dts(file);
    if (!bytes) return std::unexpected(bytes.error());
    return from_blob(std::move(*bytes), file.string());
  }
  return topology_error(
      fmt::format("{}: unknown topology file type '{}' (expected .dts or .dtb)", file.string(), ext));
}

DeviceTree DeviceTree::embedded_default() {
  auto bytes = default_topology_dtb();
  auto tree = from_blob(std::vector<uint8_t>(bytes.begin(), bytes.end()), "embedded default topology");
  if (!tree) {
    // Only a broken build gets here: the blob was checked by dtc when it was made.
    log_line(tree.error().message);
    std::abort();
  }
  return std::move(*tree);
}

std::optional<int> DeviceTree::find_node(std::string_view path) const {
  int node = fdt_path_offset_namelen(fdt(), path.data(), static_cast<int>(path.size()));
  if (node < 0) return std::nullopt;
  return node;
}

std::optional<int> DeviceTree::resolve_phandle(uint32_t phandle) const {
  if (phandle == 0 || phandle == ~0u) return std::nullopt;  // reserved values, never a node
  int node = fdt_node_offset_by_phandle(fdt(), phandle);
  if (node < 0) return std::nullopt;
  return node;
}

std::optional<int> DeviceTree::parent(int node) const {
  if (node == kRoot) return std::nullopt;
  int p = fdt_parent_offset(fdt(), node);
  if (p < 0) return std::nullopt;
  return p;
}

std::vector<int> DeviceTree::children(int node) const {
  std::vector<int> out;
  for (int child = fdt_first_subnode(fdt(), node); child >= 0; child = fdt_next_subnode(fdt(), child))
    out.push_back(child);
  return out;
}

std::vector<int> DeviceTree::descendants(int node) const {
  std::vector<int> out;
  int depth = 0;
  for (int n = fdt_next_node(fdt(), node, &depth); n >= 0 && depth > 0; n = fdt_next_node(fdt(), n, &depth))
    out.push_back(n);
  return out;
}

std::string DeviceTree::path(int node) const {
  std::string buf(256, '\0');
  for (;;) {
    int rc = fdt_get_path(fdt(), node, buf.data(), static_cast<int>(buf.size()));
    if (rc == 0) {
      buf.resize(std::strlen(buf.c_str()));
      return buf;
    }
    if (rc != -FDT_ERR_NOSPACE || buf.size() > 65536) return fmt::format("<node at offset {}>", node);
    buf.resize(buf.size() * 2);
  }
}

std::string_view DeviceTree::name(int node) const {
  int len = 0;
  const char* n = fdt_get_name(fdt(), node, &len);
  if (!n) return {};
  return {n, static_cast<size_t>(len)};
}

bool DeviceTree::is_compatible(int node, std::string_view compatible) const {
  auto prop = property(node, "compatible");
  if (!prop || prop->empty()) return false;
  std::string wanted(compatible);
  return fdt_stringlist_contains(reinterpret_cast<const char*>(prop->data()), static_cast<int>(prop->size()),
                                 wanted.c_str()) != 0;
}

bool DeviceTree::has_property(int node, std::string_view name) const { return property(node, name).has_value(); }

std::optional<std::span<const uint8_t>> DeviceTree::property(int node, std::string_view name) const {
  int len = 0;
  const void* data = fdt_getprop_namelen(fdt(), node, name.data(), static_cast<int>(name.size()), &len);
  if (!data || len < 0) return std::nullopt;
  return std::span<const uint8_t>(static_cast<const uint8_t*>(data), static_cast<size_t>(len));
}

Result<std::span<const uint8_t>> DeviceTree::slice(int node, std::string_view name, size_t offset,
                                                   size_t length) const {
  auto prop = property(node, name);
  if (!prop) return fail(kEINVAL);
  if (prop->empty()) return fail(kENODATA);
  if (prop->size() < offset || prop->size() - offset < length) return fail(kEOVERFLOW);
  return prop->subspan(offset, length);
}

Result<uint32_t> DeviceTree::read_u32(int node, std::string_view name) const { return read_u32_index(node, name, 0); }

Result<uint64_t> DeviceTree::read_u64(int node, std::string_view name) const { return read_u64_index(node, name, 0); }

Result<uint32_t> DeviceTree::read_u32_index(int node, std::string_view name, size_t index) const {
  if (index > SIZE_MAX / 4 - 1) return fail(kEOVERFLOW);
  auto bytes = NV2PT_TRY(slice(node, name, index * 4, 4));
  return be32(bytes.data());
}

Result<uint64_t> DeviceTree::read_u64_index(int node, std::string_view name, size_t index) const {
  if (index > SIZE_MAX / 8 - 1) return fail(kEOVERFLOW);
  auto bytes = NV2PT_TRY(slice(node, name, index * 8, 8));
  return be64(bytes.data());
}

Result<std::vector<uint32_t>> DeviceTree::read_u32_array(int node, std::string_view name) const {
  auto prop = property(node, name);
  if (!prop) return fail(kEINVAL);
  if (prop->empty()) return fail(kENODATA);
  if (prop->size() % 4) return fail(kEINVAL);
  std::vector<uint32_t> out;
  for (size_t i = 0; i < prop->size(); i += 4) out.push_back(be32(prop->data() + i));
  return out;
}

Result<std::vector<uint64_t>> DeviceTree::read_u64_array(int node, std::string_view name) const {
  auto prop = property(node, name);
  if (!prop) return fail(kEINVAL);
  if (prop->empty()) return fail(kENODATA);
  if (prop->size() % 8) return fail(kEINVAL);
  std::vector<uint64_t> out;
  for (size_t i = 0; i < prop->size(); i += 8) out.push_back(be64(prop->data() + i));
  return out;
}

Result<std::string_view> DeviceTree::read_string(int node, std::string_view name) const {
  auto prop = property(node, name);
  if (!prop) return fail(kEINVAL);
  if (prop->empty()) return fail(kENODATA);
  auto* chars = reinterpret_cast<const char*>(prop->data());
  size_t len = strnlen(chars, prop->size());
  if (len == prop->size()) return fail(kEILSEQ);
  return std::string_view(chars, len);
}

}  // namespace nv2pt::platform
