#include "interpose/compat_switch.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <string_view>

#include "base/log.h"

namespace nv2pt::interpose {

ProgramIdentity identify_program() {
  ProgramIdentity id;
  char exe[4096];
  const ssize_t n = ::readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0) return id;
  exe[n] = '\0';
  std::string_view path(exe, static_cast<size_t>(n));
  id.name = std::string(path.substr(path.rfind('/') + 1));
  if (!id.name.starts_with("qemu-system-")) return id;
  // The banner "QEMU emulator version X.Y.Z (...)" is one string literal in every QEMU binary; the file is in the
  // page cache (it is running), so one memmem over it costs milliseconds, once.
  const int fd = ::open(exe, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return id;
  struct stat st;
  if (::fstat(fd, &st) == 0 && st.st_size > 0) {
    void* map = ::mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ, MAP_PRIVATE, fd, 0);
    if (map != MAP_FAILED) {
      constexpr std::string_view kBanner = "QEMU emulator version ";
      const char* hit = static_cast<const char*>(
          memmem(map, static_cast<size_t>(st.st_size), kBanner.data(), kBanner.size()));
      if (hit) {
        const char* end = static_cast<const char*>(map) + st.st_size;
        const char* v = hit + kBanner.size();
        const char* e = v;
        while (e < end && e - v < 32 && (*e == '.' || (*e >= '0' && *e <= '9'))) ++e;
        id.qemu_version.assign(v, e);
      }
      ::munmap(map, static_cast<size_t>(st.st_size));
    }
  }
  ::close(fd);
  return id;
}

bool is_qemu_72(const ProgramIdentity& id) {
  return id.name.starts_with("qemu-system-") && (id.qemu_version == "7.2" || id.qemu_version.starts_with("7.2."));
}

bool CompatSwitch::decide() {
  MutexLock lock(mutex_);
  if (!active_) {
    if (setting_ == SwitchSetting::kAuto) {
      ProgramIdentity id = identify_program();
      program_ = id.qemu_version.empty() ? id.name : id.name + " " + id.qemu_version;
      active_ = is_qemu_72(id);
    } else {
      active_ = setting_ == SwitchSetting::kOn;
    }
  }
  return *active_;
}

std::optional<bool> CompatSwitch::active() const {
  MutexLock lock(mutex_);
  if (setting_ != SwitchSetting::kAuto) return setting_ == SwitchSetting::kOn;
  return active_;
}

std::string CompatSwitch::detected_program() const {
  MutexLock lock(mutex_);
  return program_;
}

void CompatSwitch::note_nvlink2_region_info(void* buffer) {
  if (!buffer || !decide()) return;
  MutexLock lock(mutex_);
  const size_t used = count_.load(std::memory_order_relaxed);
  for (size_t i = 0; i < used; ++i) {
    if (kept_[i].load(std::memory_order_relaxed) == buffer) return;
  }
  if (used == kMaxKept) return;  // far beyond 6 GPUs + 12 bridges; freeing normally is the safe fallback
  kept_[used].store(buffer, std::memory_order_relaxed);
  count_.store(used + 1, std::memory_order_release);
  kept_total_.fetch_add(1, std::memory_order_relaxed);
}

bool CompatSwitch::keep_slow(void* p) {
  const size_t used = count_.load(std::memory_order_acquire);
  for (size_t i = 0; i < used; ++i) {
    if (kept_[i].load(std::memory_order_relaxed) != p) continue;
    skipped_.fetch_add(1, std::memory_order_relaxed);
    if (!announced_.exchange(true)) {
      // Once per process, the first time the switch changes what the program does. A raw write: we are inside
      // free(), where stdio could take locks the program holds.
      char msg[256];
      const int n = snprintf(msg, sizeof msg,
                             "compat %.*s: keeping NVLink2 region-info buffers alive (QEMU 7.2 frees them "
                             "while properties point into them; %zu so far, count in the report)",
                             static_cast<int>(kQemu72RegionInfoUaf.size()), kQemu72RegionInfoUaf.data(),
                             kept_total_.load(std::memory_order_relaxed));
      if (n > 0) log_line(std::string_view(msg, std::min<size_t>(static_cast<size_t>(n), sizeof msg - 1)));
    }
    return true;
  }
  return false;
}

}  // namespace nv2pt::interpose
