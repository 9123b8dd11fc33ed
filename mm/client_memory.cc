#include "mm/client_memory.h"

#include <pthread.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>

namespace nv2pt::mm {
namespace {

// 0: process_vm_* not tried yet, 1: works, 2: refused: plain copies.
std::atomic<int> g_process_vm_state{0};

// The process's pid for process_vm_*, read once and again in a forked child: glibc does not cache it, and the
// system call was a sixth of what a small ioctl's copy-in costs.
std::atomic<pid_t> g_pid{0};

pid_t own_pid() {
  static const bool reset_in_child =
      pthread_atfork(nullptr, nullptr, [] { g_pid.store(0, std::memory_order_relaxed); }) == 0;
  pid_t pid = g_pid.load(std::memory_order_relaxed);
  if (pid == 0 || !reset_in_child) {
    pid = getpid();
    g_pid.store(pid, std::memory_order_relaxed);
  }
  return pid;
}

Result<void> copy(void* local, void* remote, size_t len, bool to_remote) {
  if (len == 0) return {};
  if (g_process_vm_state.load(std::memory_order_relaxed) != 2) {
    iovec l{local, len}, r{remote, len};
    const ssize_t n =
        to_remote ? process_vm_writev(own_pid(), &l, 1, &r, 1, 0) : process_vm_readv(own_pid(), &l, 1, &r, 1, 0);
    if (n == static_cast<ssize_t>(len)) {
      g_process_vm_state.store(1, std::memory_order_relaxed);
      return {};
    }
    if (!(n < 0 && (errno == ENOSYS || errno == EPERM))) return fail(kEFAULT);  // partial, or the range faulted
    g_process_vm_state.store(2, std::memory_order_relaxed);
  }
  if (to_remote) std::memcpy(remote, local, len);
  else std::memcpy(local, remote, len);
  return {};
}

}  // namespace

Result<void> copy_from_client(void* out, uint64_t ua, size_t len) {
  return copy(out, reinterpret_cast<void*>(ua), len, /*to_remote=*/false);
}

Result<void> copy_to_client(uint64_t ua, const void* in, size_t len) {
  // iovec wants non-const; process_vm_writev only reads the local side.
  return copy(const_cast<void*>(in), reinterpret_cast<void*>(ua), len, /*to_remote=*/true);
}

Result<std::string> copy_string_from_client(uint64_t ua, size_t max) {
  // As strndup_user: first the length (strnlen_user), then one copy of that many bytes (memdup_user), whose last
  // byte becomes the terminator. The length is found in chunks that never cross a 4 KiB boundary, so a string
  // ending just before an unmapped page is still readable; nothing past it is gathered.
  constexpr uint64_t kChunk = 4096;
  char chunk[kChunk];
  size_t length = 0;  // with the terminator, once found
  for (size_t scanned = 0; !length;) {
    if (scanned >= max) return fail(kEINVAL);
    const uint64_t at = ua + scanned;
    if (at < ua) return fail(kEFAULT);  // wrapped past the top of the address space
    const size_t n = static_cast<size_t>(std::min<uint64_t>(kChunk - at % kChunk, max - scanned));
    NV2PT_TRY(copy_from_client(chunk, at, n));
    const void* nul = std::memchr(chunk, 0, n);
    if (!nul) {
      scanned += n;
      continue;
    }
    const size_t in_chunk = static_cast<size_t>(static_cast<const char*>(nul) - chunk);
    if (scanned == 0) return std::string(chunk, in_chunk);  // all of it is in the first chunk: no second read
    length = scanned + in_chunk + 1;
  }
  std::string out(length, '\0');
  NV2PT_TRY(copy_from_client(out.data(), ua, length));
  // The last byte becomes the terminator; a NUL the client wrote meanwhile ends the C string earlier.
  out.resize(strnlen(out.data(), length - 1));
  return out;
}

}  // namespace nv2pt::mm
