// The in-process host kernel as the preload library's libc wrappers see it: one per process, created on the first
// call that names an emulated path, holding the vfio::Host built from NV2PT_TOPOLOGY, the fd table, the
// compatibility switch, the event log and the report.
//
// Every call here returns Result; the wrappers (libc_wrappers.cc) turn errors into -1/errno and nothing else.
// Path calls return nullopt for a path that is not ours, and the wrapper hands the call to libc unchanged.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <atomic>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/thread_annotations.h"
#include "base/errno.h"
#include "interpose/compat_switch.h"
#include "interpose/event_log.h"
#include "interpose/fd_table.h"
#include "interpose/preload_options.h"
#include "interpose/sysfs_view.h"
#include "vfio/host.h"

namespace nv2pt::interpose {

// The fd table lives outside the Interposer so that the lookup in every wrapper never has to create anything: it
// is constant-initialised (all slots null) and never destroyed, since wrappers still run during exit.
union FdTableStorage {
  constexpr FdTableStorage() : table() {}
  ~FdTableStorage() {}
  FdTable table;
};
extern constinit FdTableStorage fd_table_storage;
inline FdTable& fd_table() { return fd_table_storage.table; }

// Calls that reach the model from a wrapper mark the thread for their duration: libc calls the model itself makes
// (its memfds, its lock files, dtc) go straight to libc, and never re-enter the interposer.
inline thread_local int in_model = 0;
struct ModelScope {
  ModelScope() { ++in_model; }
  ~ModelScope() { --in_model; }
  ModelScope(const ModelScope&) = delete;
  ModelScope& operator=(const ModelScope&) = delete;
};

// The interposer maps fds and paths to the model's objects and nothing more: every UAPI argument is decoded by the
// vfio object the fd stands for. It is the vfio layer's FdResolver over the process's fd table.
class Interposer final : public vfio::FdResolver {
 public:
  // The process's interposer, created on first use; never destroyed (the report at exit still reads it).
  // One load once it exists (every emulated call comes here); the first call creates it.
  static Interposer& get() {
    if (Interposer* ip = instance_.load(std::memory_order_acquire)) return *ip;
    return create();
  }
  // The interposer if it exists already, else nullptr (the compat switch in free() must not create it).
  static Interposer* peek() { return instance_.load(std::memory_order_acquire); }

  // nullptr when the topology failed to load (the reason went to stderr once): no emulated devices then.
  vfio::Host* host() { return host_.get(); }
  const PreloadOptions& options() const { return options_; }
  CompatSwitch& compat() { return compat_; }
  EventLog& log() { return log_; }

  // --- path calls (nullopt: not ours) ---
  std::optional<Result<int>> open(const char* path, int flags);
  std::optional<Result<void>> stat(const char* path, struct stat& st, bool follow);
  std::optional<Result<std::string>> readlink(const char* path);
  std::optional<Result<std::string>> realpath(const char* path);

  // --- calls on an fd of the table ---
  // Inline, and without the log's formatting in its frame: the dispatch is the hot path of every emulated call.
  Result<long> ioctl(int fd, FdObject& object, unsigned long cmd, unsigned long arg) {
    if (log_.enabled()) [[unlikely]] return logged_ioctl(fd, object, cmd, arg);
    return dispatch_ioctl(object, cmd, arg);
  }
  Result<size_t> pread(FdObject& object, void* buf, size_t count, off_t offset);
  Result<size_t> pwrite(FdObject& object, const void* buf, size_t count, off_t offset);
  Result<void*> mmap(FdObject& object, void* addr, size_t length, int prot, int flags, off_t offset);
  // The entry of a closing fd: releases the object behind it (the caller closes the real fd).
  void close(int fd);

  // munmap of [addr, addr + length): tells every device whose mapping it overlaps. Cheap when no device mapping
  // was ever made.
  static bool any_device_mapping() { return device_mapped_.load(std::memory_order_relaxed); }
  void munmap(void* addr, size_t length);

  // Writes NV2PT_REPORT now (no-op without one).
  // on_signal: the report signal asked for it; DMA requests (NV2PT_DMA_REQUESTS) run only then.
  void write_report(bool on_signal = false);
  // Writes NV2PT_REPORT as the state at a fatal HMI, which kills the process next: the report names the HMI.
  void write_fatal_hmi_report(const platform::Hmi& hmi);

  // Device fds handed out so far, by device name (also those closed since), for the report.
  std::map<std::string, unsigned> devices_opened() const;

 private:
  static Interposer& create();  // get()'s slow path
  explicit Interposer(PreloadOptions options);
  void start_reporting();
  std::optional<Node> find_node(const std::string& normalized, Namespace ns);
  // The emulated node at `path`: nullopt if the path is not ours (the real call goes on), ENOENT if it lies in a
  // namespace we own but names nothing.
  std::optional<Result<Node>> resolve(const char* path);
  Result<int> open_node(const Node& node, int flags);
  Result<int> install(int fd, std::unique_ptr<FdObject> object);
  std::string describe(const FdObject& object) const;

  Result<long> dispatch_ioctl(FdObject& object, unsigned long cmd, unsigned long arg);
  Result<long> logged_ioctl(int fd, FdObject& object, unsigned long cmd, unsigned long arg);
  Result<long> device_ioctl(FdObject& object, unsigned long cmd, unsigned long arg);

  // vfio::FdResolver over fd_table().
  Result<std::shared_ptr<vfio::Container>> container(int fd) const override;
  Result<vfio::Group*> group(int fd) const override;
  Result<int> install_device(vfio::Group& group, vfio::PciDevice& device) override;
  // The object behind `fd` if it is of `kind`; EBADF for a closed fd, EINVAL for any other.
  static Result<FdObject*> object_of(int fd, FdKind kind);

  static std::atomic<Interposer*> instance_;
  static std::atomic<bool> device_mapped_;

  const PreloadOptions options_;
  std::unique_ptr<vfio::Host> host_;
  CompatSwitch compat_;
  EventLog log_;
  std::atomic<unsigned> next_serial_{1};

  Mutex devices_mutex_;
  // Devices that handed out a mapping at least once.
  std::vector<vfio::PciDevice*> mapping_devices_ NV2PT_GUARDED_BY(devices_mutex_);

  Mutex report_mutex_;

  mutable Mutex history_mutex_;
  std::map<std::string, unsigned> devices_opened_ NV2PT_GUARDED_BY(history_mutex_);
};

}  // namespace nv2pt::interpose
