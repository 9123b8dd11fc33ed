#include "interpose/interposer.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <future>
#include <sstream>
#include <thread>

#include "base/log.h"
#include "base/thread_annotations.h"
#include "interpose/dma_requests.h"
#include "interpose/ioctl_names.h"
#include "interpose/report.h"
#include "platform/device_tree.h"
#include "platform/machine.h"
#include "vfio/uapi.h"

namespace nv2pt::interpose {

std::atomic<Interposer*> Interposer::instance_{nullptr};
std::atomic<bool> Interposer::device_mapped_{false};

constinit FdTableStorage fd_table_storage;

namespace {

std::unique_ptr<vfio::Host> create_host(const PreloadOptions& options) {
  auto tree = options.topology.empty() ? platform::TopologyResult<platform::DeviceTree>(
                                             platform::DeviceTree::embedded_default())
                                       : platform::DeviceTree::load(options.topology);
  if (!tree) {
    log_line("error: " + tree.error().message + " (no emulated devices)");
    return nullptr;
  }
  std::string origin = tree->origin();
  auto machine = platform::Machine::load(std::move(*tree));
  if (!machine) {
    log_line("error: " + origin + ": " + machine.error().message + " (no emulated devices)");
    return nullptr;
  }
  vfio::HostOptions host_options;
  host_options.hardware.hmi_policy = options.hmi;
  host_options.runtime_dir = options.runtime_dir;
  auto host = vfio::Host::create(std::move(*machine), host_options);
  if (!host) {
    log_line(fmt::format("error: cannot create the emulated host: {} (no emulated devices)", errno_name(host.error())));
    return nullptr;
  }
  return std::move(*host);
}

// The report signal's handler only wakes the reporter thread: writing JSON is not async-signal-safe.
int report_eventfd = -1;
void on_report_signal(int) {
  const uint64_t one = 1;
  (void)!::write(report_eventfd, &one, sizeof one);
}

void report_at_exit() {
  if (Interposer* ip = Interposer::peek()) ip->write_report();
}

}  // namespace

Interposer& Interposer::create() {
  // Only until the interposer exists: libstdc++'s call_once writes two thread-locals before it even looks at the
  // flag, which cost a third of an interposed ioctl when every call came through here.
  static std::once_flag once;
  std::call_once(once, [] {
    ModelScope scope;
    auto options = read_preload_options([](const char* name) -> const char* { return ::getenv(name); });
    if (!options) {
      log_line("error: " + options.error() + "; using defaults");
      options = read_preload_options([](const char*) -> const char* { return nullptr; });
    }
    auto* ip = new Interposer(std::move(*options));
    instance_.store(ip, std::memory_order_release);
    ip->start_reporting();
  });
  return *instance_.load(std::memory_order_acquire);
}

Interposer::Interposer(PreloadOptions options)
    : options_(std::move(options)), host_(create_host(options_)), compat_(options_.qemu72_uaf), log_(options_.log) {
  if (host_) log_.record(fmt::format("host created: topology {}", options_.topology.empty() ? "embedded default" : options_.topology));
}

void Interposer::start_reporting() {
  if (options_.report.empty()) return;
  std::atexit(report_at_exit);
  // A fatal HMI kills the process with a signal: no atexit handler runs, so the report is written before it.
  if (host_) {
    host_->hardware().hmi_log().set_fatal_hook([this](const platform::Hmi& hmi) { write_fatal_hmi_report(hmi); });
  }
  if (options_.report_signal == 0) return;
  struct sigaction old;
  if (sigaction(options_.report_signal, nullptr, &old) != 0 || old.sa_handler != SIG_DFL) return;
  report_eventfd = eventfd(0, EFD_CLOEXEC);
  if (report_eventfd < 0) return;
  std::thread([this] {
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, nullptr);
    for (;;) {
      uint64_t n;
      if (::read(report_eventfd, &n, sizeof n) == sizeof n) write_report(/*on_signal=*/true);
    }
  }).detach();
  struct sigaction sa{};
  sa.sa_handler = on_report_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(options_.report_signal, &sa, nullptr);
}

std::map<std::string, unsigned> Interposer::devices_opened() const {
  MutexLock lock(history_mutex_);
  return devices_opened_;
}

void Interposer::write_report(bool on_signal) {
  if (options_.report.empty()) return;
  ModelScope scope;
  MutexLock lock(report_mutex_);
  if (on_signal && host_ && !options_.dma_requests.empty()) {
    // Executed once: the requests are removed before their results appear. The results have a file of their own:
    // the report at exit, which may follow within milliseconds when the guest acts on the DMA, would overwrite them.
    if (std::ifstream in{options_.dma_requests}; in) {
      std::stringstream text;
      text << in.rdbuf();
      std::remove(options_.dma_requests.c_str());
      (void)write_json_file(run_dma_requests(*host_, mm::AddressSpace::current(), text.str()),
                            options_.dma_requests + ".json");
    }
  }
  (void)write_report_file(*this, options_.report);
}

void Interposer::write_fatal_hmi_report(const platform::Hmi& hmi) {
  if (options_.report.empty()) return;
  // On a thread of its own, waited for a bounded time: the thread that saw the HMI may hold a lock of the model
  // that the report needs (a model call that touched GPU RAM), and the process must die all the same.
  auto done = std::make_shared<std::promise<void>>();
  std::future<void> written = done->get_future();
  std::thread([this, hmi, done] {
    ModelScope scope;
    {
      std::lock_guard lock(report_mutex_);
      (void)write_report_file(*this, options_.report, &hmi);
    }
    done->set_value();
  }).detach();
  if (written.wait_for(std::chrono::seconds(2)) == std::future_status::ready) return;
  ModelScope scope;
  if (written.wait_for(std::chrono::seconds(0)) != std::future_status::ready)  // a late full report stays
    (void)write_fatal_hmi_only_report(options_.report, hmi);
}

// --- paths ---

std::optional<Node> Interposer::find_node(const std::string& normalized, Namespace ns) {
  if (!host_) return std::nullopt;
  return lookup(*host_, ns, normalized);
}

std::optional<Result<Node>> Interposer::resolve(const char* path) {
  std::optional<std::string> p = normalize_path(path);
  if (!p) return std::nullopt;
  const Namespace ns = classify(*p);
  if (ns == Namespace::kNone) return std::nullopt;
  std::optional<Node> node = find_node(*p, ns);
  if (!node) {
    if (owns_absent(ns)) return Result<Node>(fail(kENOENT));
    return std::nullopt;
  }
  return Result<Node>(std::move(*node));
}

std::optional<Result<int>> Interposer::open(const char* path, int flags) {
  std::optional<Result<Node>> node = resolve(path);
  if (!node) return std::nullopt;
  if (!*node) return Result<int>(fail(node->error()));
  const Node& n = **node;
  Result<int> r = open_node(n, flags);
  if (n.kind == NodeKind::kVfioGroup || n.kind == NodeKind::kVfioControl) {
    log_.record(fmt::format("open {} = {}", n.path, r ? std::to_string(*r) : std::string(errno_name(r.error()))));
  }
  return r;
}

Result<int> Interposer::install(int fd, std::unique_ptr<FdObject> object) {
  if (fd < 0) return fail(Errno{errno});
  if (!fd_table().install(fd, std::move(object))) {
    ::close(fd);
    return fail(Errno{EMFILE});
  }
  return fd;
}

Result<int> Interposer::open_node(const Node& node, int flags) {
  const int accmode = flags & O_ACCMODE;
  const int cloexec = (flags & O_CLOEXEC) ? EFD_CLOEXEC : 0;
  switch (node.kind) {
    case NodeKind::kDirectory:
    case NodeKind::kSymlink:
      if (node.kind == NodeKind::kSymlink && (flags & O_NOFOLLOW)) return fail(Errno{ELOOP});
      if (accmode != O_RDONLY) return fail(Errno{EISDIR});
      return fail(Errno{ENOTSUP});  // nobody lists these directories; see the interposer's README
    case NodeKind::kFile: {
      if (accmode != O_RDONLY) return fail(Errno{EACCES});
      if (flags & O_DIRECTORY) return fail(Errno{ENOTDIR});
      // A real file with the content, so read/fstat/lseek/close need no wrapping.
      const int fd = memfd_create("nv2pt-sysfs", (flags & O_CLOEXEC) ? MFD_CLOEXEC : 0);
      if (fd < 0) return fail(Errno{errno});
      size_t done = 0;
      while (done < node.content.size()) {
        const ssize_t n = ::write(fd, node.content.data() + done, node.content.size() - done);
        if (n <= 0) {
          ::close(fd);
          return fail(kEIO);
        }
        done += static_cast<size_t>(n);
      }
      ::lseek(fd, 0, SEEK_SET);
      return install(fd, std::make_unique<FdObject>(FdObject{.kind = FdKind::kFile}));
    }
    case NodeKind::kVfioControl: {
      if (flags & O_DIRECTORY) return fail(Errno{ENOTDIR});
      auto object = std::make_unique<FdObject>(FdObject{.kind = FdKind::kContainer});
      object->container = host_->open_container();
      object->serial = next_serial_++;
      return install(eventfd(0, cloexec), std::move(object));
    }
    case NodeKind::kVfioGroup: {
      if (flags & O_DIRECTORY) return fail(Errno{ENOTDIR});
      vfio::Group* group = NV2PT_TRY(host_->open_group(node.group));
      auto object = std::make_unique<FdObject>(FdObject{.kind = FdKind::kGroup, .group = group});
      object->serial = static_cast<unsigned>(node.group);
      Result<int> fd = install(eventfd(0, cloexec), std::move(object));
      if (!fd) host_->release_group(*group);
      return fd;
    }
  }
  return fail(kEINVAL);
}

std::optional<Result<void>> Interposer::stat(const char* path, struct stat& st, bool follow) {
  std::optional<Result<Node>> node = resolve(path);
  if (!node) return std::nullopt;
  if (!*node) return Result<void>(fail(node->error()));
  const Node& n = **node;
  fill_stat(n, st, follow);
  return Result<void>();
}

std::optional<Result<std::string>> Interposer::readlink(const char* path) {
  std::optional<Result<Node>> node = resolve(path);
  if (!node) return std::nullopt;
  if (!*node) return Result<std::string>(fail(node->error()));
  const Node& n = **node;
  if (n.kind != NodeKind::kSymlink) return Result<std::string>(fail(kEINVAL));
  return Result<std::string>(n.link);
}

std::optional<Result<std::string>> Interposer::realpath(const char* path) {
  std::optional<Result<Node>> node = resolve(path);
  if (!node) return std::nullopt;
  if (!*node) return Result<std::string>(fail(node->error()));
  const Node& n = **node;
  return Result<std::string>(n.kind == NodeKind::kSymlink ? n.target : n.path);
}

// --- fds ---

std::string Interposer::describe(const FdObject& o) const {
  switch (o.kind) {
    case FdKind::kContainer: return fmt::format("container#{}", o.serial);
    case FdKind::kGroup: return fmt::format("group#{}", o.serial);
    case FdKind::kDevice: return fmt::format("device {}", o.device->name());
    case FdKind::kFile: return "file";
  }
  return "?";
}

void Interposer::close(int fd) {
  FdObject* o = fd_table().remove(fd);
  if (!o) return;
  switch (o->kind) {
    case FdKind::kContainer:
      log_.record(fmt::format("close {}", describe(*o)));
      o->container.reset();  // the groups attached to it keep it alive, as the kernel's container does
      break;
    case FdKind::kGroup:
      log_.record(fmt::format("close {}", describe(*o)));
      host_->release_group(*o->group);
      break;
    case FdKind::kDevice:
      log_.record(fmt::format("close {}", describe(*o)));
      o->group->device_released(*o->device);
      break;
    case FdKind::kFile:
      break;
  }
}

Result<long> Interposer::dispatch_ioctl(FdObject& object, unsigned long cmd, unsigned long arg) {
  switch (object.kind) {
    case FdKind::kContainer: return object.container->ioctl(cmd, arg);
    case FdKind::kGroup: return object.group->ioctl(mm::AddressSpace::current(), cmd, arg, *this);
    case FdKind::kDevice: return device_ioctl(object, cmd, arg);
    case FdKind::kFile: break;
  }
  return fail(kENOTTY);
}

Result<long> Interposer::logged_ioctl(int fd, FdObject& object, unsigned long cmd, unsigned long arg) {
  const Result<long> r = dispatch_ioctl(object, cmd, arg);
  log_.record(fmt::format("{} fd={} {} = {}", describe(object), fd, describe_ioctl(object.kind, cmd, arg, r),
                          r ? std::to_string(*r) : std::string(errno_name(r.error()))));
  return r;
}

Result<long> Interposer::device_ioctl(FdObject& object, unsigned long cmd, unsigned long arg) {
  vfio::PciDevice& d = *object.device;
  const long r = NV2PT_TRY(d.ioctl(mm::AddressSpace::current(), cmd, arg, *this));
  if (cmd == VFIO_DEVICE_GET_REGION_INFO) {
    // The compat switch needs the exact buffers that now hold an NVLink2 capability chain (SSATGT present).
    vfio_region_info info;
    if (mm::copy_from_client(&info, arg, sizeof(info)) && (info.flags & VFIO_REGION_INFO_FLAG_CAPS) &&
        info.cap_offset && d.region_has_capability(info.index, VFIO_REGION_INFO_CAP_NVLINK2_SSATGT)) {
      compat_.note_nvlink2_region_info(reinterpret_cast<void*>(arg));
    }
  }
  return r;
}

// --- vfio::FdResolver ---

Result<FdObject*> Interposer::object_of(int fd, FdKind kind) {
  FdObject* o = fd_table().find(fd);
  // Any real fd that is not ours is EINVAL, as a non-VFIO file is in the kernel; a closed one is EBADF.
  if (!o) return fail(fcntl(fd, F_GETFD) < 0 ? kEBADF : kEINVAL);
  if (o->kind != kind) return fail(kEINVAL);
  return o;
}

Result<std::shared_ptr<vfio::Container>> Interposer::container(int fd) const {
  FdObject* o = NV2PT_TRY(object_of(fd, FdKind::kContainer));
  return o->container;
}

Result<vfio::Group*> Interposer::group(int fd) const {
  FdObject* o = NV2PT_TRY(object_of(fd, FdKind::kGroup));
  return o->group;
}

Result<int> Interposer::install_device(vfio::Group& group, vfio::PciDevice& device) {
  auto o = std::make_unique<FdObject>(FdObject{.kind = FdKind::kDevice, .group = &group, .device = &device});
  const int fd = NV2PT_TRY(install(memfd_create("vfio-device", MFD_CLOEXEC), std::move(o)));
  MutexLock lock(history_mutex_);
  ++devices_opened_[device.name()];
  return fd;
}

Result<size_t> Interposer::pread(FdObject& object, void* buf, size_t count, off_t offset) {
  if (object.kind != FdKind::kDevice) return fail(kEINVAL);
  return object.device->read({static_cast<std::byte*>(buf), count}, static_cast<uint64_t>(offset));
}

Result<size_t> Interposer::pwrite(FdObject& object, const void* buf, size_t count, off_t offset) {
  if (object.kind != FdKind::kDevice) return fail(kEINVAL);
  return object.device->write({static_cast<const std::byte*>(buf), count}, static_cast<uint64_t>(offset));
}

Result<void*> Interposer::mmap(FdObject& object, void* addr, size_t length, int prot, int flags, off_t offset) {
  if (object.kind != FdKind::kDevice) return fail(kENODEV);
  Result<void*> r = object.device->mmap(mm::AddressSpace::current(), addr, length, prot, flags,
                                        static_cast<uint64_t>(offset));
  if (log_.enabled()) {
    log_.record(fmt::format("{} mmap length={:#x} offset={:#x} = {}", describe(object), length,
                            static_cast<uint64_t>(offset),
                            r ? fmt::format("{}", *r) : std::string(errno_name(r.error()))));
  }
  if (r) {
    MutexLock lock(devices_mutex_);
    if (std::find(mapping_devices_.begin(), mapping_devices_.end(), object.device) == mapping_devices_.end())
      mapping_devices_.push_back(object.device);
    device_mapped_.store(true, std::memory_order_relaxed);
  }
  return r;
}

void Interposer::munmap(void* addr, size_t length) {
  MutexLock lock(devices_mutex_);
  for (vfio::PciDevice* d : mapping_devices_) {
    if (!d->owns_mapping(addr, length)) continue;
    log_.record(fmt::format("device {} munmap {} length={:#x}", d->name(), addr, length));
    d->munmap(addr, length);
  }
}

}  // namespace nv2pt::interpose
