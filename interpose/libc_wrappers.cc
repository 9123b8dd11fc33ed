// The libc entry points the preload library exports (docs/qemu-7.2.md#libc-entry-points: the set QEMU 7.2 needs,
// including the _FORTIFY_SOURCE variants that Debian's build calls instead of the plain functions), plus munmap and
// free.
//
// Each wrapper: (1) decides in a few instructions whether the call can concern an emulated object (an fd in the
// table, or a path under one of the emulated prefixes); if not, it calls the real function; (2) otherwise hands it
// to the Interposer and turns a Result error into -1/errno, the only place where that translation happens.
// Calls made by the model itself (in_model) and by dlsym (real::resolving) always go to libc.
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "interpose/interposer.h"
#include "interpose/real_libc.h"

#define NV2PT_EXPORT extern "C" __attribute__((visibility("default")))

// The fortified entry points exist in glibc but are only declared by its headers under _FORTIFY_SOURCE.
extern "C" {
int __open_2(const char* path, int flags);
int __open64_2(const char* path, int flags);
int __openat_2(int dirfd, const char* path, int flags);
int __openat64_2(int dirfd, const char* path, int flags);
ssize_t __pread_chk(int fd, void* buf, size_t nbytes, off_t offset, size_t buflen);
ssize_t __pread64_chk(int fd, void* buf, size_t nbytes, off64_t offset, size_t buflen);
ssize_t __readlink_chk(const char* path, char* buf, size_t len, size_t buflen) noexcept;
ssize_t __readlinkat_chk(int dirfd, const char* path, char* buf, size_t len, size_t buflen) noexcept;
char* __realpath_chk(const char* path, char* resolved, size_t resolvedlen) noexcept;
[[noreturn]] void __chk_fail(void);
// Pre-2.33 stat entry points, still exported for old binaries.
int __xstat(int ver, const char* path, struct stat* st) noexcept;
int __xstat64(int ver, const char* path, struct stat64* st) noexcept;
int __lxstat(int ver, const char* path, struct stat* st) noexcept;
int __lxstat64(int ver, const char* path, struct stat64* st) noexcept;
int __fxstatat(int ver, int dirfd, const char* path, struct stat* st, int flags) noexcept;
int __fxstatat64(int ver, int dirfd, const char* path, struct stat64* st, int flags) noexcept;
}

namespace nv2pt::interpose {
namespace {

static_assert(sizeof(struct stat) == sizeof(struct stat64), "64-bit glibc: one stat layout");

bool bypass() { return in_model > 0 || real::resolving > 0; }

// Only absolute paths below /sys, /dev or /proc can be ours; everything else is decided on the first characters.
bool may_be_ours(const char* path) {
  if (!path || path[0] != '/') return false;
  while (*path == '/') ++path;
  return *path == 's' || *path == 'd' || *path == 'p';
}

// A path given with a directory fd is ours only if it is absolute (QEMU only uses absolute paths).
bool may_be_ours_at(int dirfd, const char* path) {
  (void)dirfd;
  return may_be_ours(path);
}

template <class T>
T to_errno(const Result<T>& r, T failure) {
  if (r) return *r;
  errno = r.error().value;
  return failure;
}

int to_errno(const Result<void>& r) {
  if (r) return 0;
  errno = r.error().value;
  return -1;
}

// nullopt: not ours.
std::optional<int> emulated_open(const char* path, int flags) {
  if (bypass() || !may_be_ours(path)) return std::nullopt;
  // Cheap syntactic test before the interposer (and the host) is created.
  auto p = normalize_path(path);
  if (!p || classify(*p) == Namespace::kNone) return std::nullopt;
  ModelScope scope;
  auto r = Interposer::get().open(path, flags);
  if (!r) return std::nullopt;
  return to_errno<int>(*r, -1);
}

mode_t mode_arg(int flags, va_list ap) {
  if ((flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE) return static_cast<mode_t>(va_arg(ap, int));
  return 0;
}

std::optional<int> emulated_stat(const char* path, struct stat* st, bool follow) {
  if (bypass() || !may_be_ours(path)) return std::nullopt;
  auto p = normalize_path(path);
  if (!p || classify(*p) == Namespace::kNone) return std::nullopt;
  ModelScope scope;
  struct stat tmp;
  auto r = Interposer::get().stat(path, tmp, follow);
  if (!r) return std::nullopt;
  if (!*r) return to_errno(*r);
  if (!st) {
    errno = EFAULT;
    return -1;
  }
  *st = tmp;
  return 0;
}

std::optional<ssize_t> emulated_readlink(const char* path, char* buf, size_t len) {
  if (bypass() || !may_be_ours(path)) return std::nullopt;
  auto p = normalize_path(path);
  if (!p || classify(*p) == Namespace::kNone) return std::nullopt;
  ModelScope scope;
  auto r = Interposer::get().readlink(path);
  if (!r) return std::nullopt;
  if (!*r) {
    errno = r->error().value;
    return -1;
  }
  const size_t n = std::min(len, (*r)->size());
  memcpy(buf, (*r)->data(), n);  // no NUL, as readlink(2)
  return static_cast<ssize_t>(n);
}

std::optional<char*> emulated_realpath(const char* path, char* resolved) {
  if (bypass() || !may_be_ours(path)) return std::nullopt;
  auto p = normalize_path(path);
  if (!p || classify(*p) == Namespace::kNone) return std::nullopt;
  ModelScope scope;
  auto r = Interposer::get().realpath(path);
  if (!r) return std::nullopt;
  if (!*r) {
    errno = r->error().value;
    return nullptr;
  }
  const std::string& s = **r;
  if (s.size() >= PATH_MAX) {
    errno = ENAMETOOLONG;
    return nullptr;
  }
  char* out = resolved ? resolved : static_cast<char*>(malloc(s.size() + 1));
  if (!out) {
    errno = ENOMEM;
    return nullptr;
  }
  memcpy(out, s.c_str(), s.size() + 1);
  return out;
}

FdObject* ours(int fd) { return bypass() ? nullptr : fd_table().find(fd); }

ssize_t emulated_pread(FdObject& o, void* buf, size_t count, off_t offset) {
  ModelScope scope;
  return to_errno<size_t>(Interposer::get().pread(o, buf, count, offset), static_cast<size_t>(-1));
}

ssize_t emulated_pwrite(FdObject& o, const void* buf, size_t count, off_t offset) {
  ModelScope scope;
  return to_errno<size_t>(Interposer::get().pwrite(o, buf, count, offset), static_cast<size_t>(-1));
}

void* emulated_mmap(FdObject& o, void* addr, size_t length, int prot, int flags, off_t offset) {
  ModelScope scope;
  return to_errno<void*>(Interposer::get().mmap(o, addr, length, prot, flags, offset), MAP_FAILED);
}

}  // namespace
}  // namespace nv2pt::interpose

using namespace nv2pt::interpose;

// --- open ---

NV2PT_EXPORT int open(const char* path, int flags, ...) {
  va_list ap;
  va_start(ap, flags);
  const mode_t mode = mode_arg(flags, ap);
  va_end(ap);
  if (auto r = emulated_open(path, flags)) return *r;
  return NV2PT_REAL(open)(path, flags, mode);
}

NV2PT_EXPORT int open64(const char* path, int flags, ...) {
  va_list ap;
  va_start(ap, flags);
  const mode_t mode = mode_arg(flags, ap);
  va_end(ap);
  if (auto r = emulated_open(path, flags)) return *r;
  return NV2PT_REAL(open64)(path, flags, mode);
}

NV2PT_EXPORT int __open_2(const char* path, int flags) {
  if (auto r = emulated_open(path, flags)) return *r;
  return NV2PT_REAL(__open_2)(path, flags);
}

NV2PT_EXPORT int __open64_2(const char* path, int flags) {
  if (auto r = emulated_open(path, flags)) return *r;
  return NV2PT_REAL(__open64_2)(path, flags);
}

NV2PT_EXPORT int openat(int dirfd, const char* path, int flags, ...) {
  va_list ap;
  va_start(ap, flags);
  const mode_t mode = mode_arg(flags, ap);
  va_end(ap);
  if (may_be_ours_at(dirfd, path))
    if (auto r = emulated_open(path, flags)) return *r;
  return NV2PT_REAL(openat)(dirfd, path, flags, mode);
}

NV2PT_EXPORT int openat64(int dirfd, const char* path, int flags, ...) {
  va_list ap;
  va_start(ap, flags);
  const mode_t mode = mode_arg(flags, ap);
  va_end(ap);
  if (may_be_ours_at(dirfd, path))
    if (auto r = emulated_open(path, flags)) return *r;
  return NV2PT_REAL(openat64)(dirfd, path, flags, mode);
}

NV2PT_EXPORT int __openat_2(int dirfd, const char* path, int flags) {
  if (may_be_ours_at(dirfd, path))
    if (auto r = emulated_open(path, flags)) return *r;
  return NV2PT_REAL(__openat_2)(dirfd, path, flags);
}

NV2PT_EXPORT int __openat64_2(int dirfd, const char* path, int flags) {
  if (may_be_ours_at(dirfd, path))
    if (auto r = emulated_open(path, flags)) return *r;
  return NV2PT_REAL(__openat64_2)(dirfd, path, flags);
}

// --- stat ---

NV2PT_EXPORT int stat(const char* path, struct stat* st) noexcept {
  if (auto r = emulated_stat(path, st, true)) return *r;
  return NV2PT_REAL(stat)(path, st);
}

NV2PT_EXPORT int stat64(const char* path, struct stat64* st) noexcept {
  if (auto r = emulated_stat(path, reinterpret_cast<struct stat*>(st), true)) return *r;
  return NV2PT_REAL(stat64)(path, st);
}

NV2PT_EXPORT int lstat(const char* path, struct stat* st) noexcept {
  if (auto r = emulated_stat(path, st, false)) return *r;
  return NV2PT_REAL(lstat)(path, st);
}

NV2PT_EXPORT int lstat64(const char* path, struct stat64* st) noexcept {
  if (auto r = emulated_stat(path, reinterpret_cast<struct stat*>(st), false)) return *r;
  return NV2PT_REAL(lstat64)(path, st);
}

NV2PT_EXPORT int fstatat(int dirfd, const char* path, struct stat* st, int flags) noexcept {
  if (may_be_ours_at(dirfd, path))
    if (auto r = emulated_stat(path, st, !(flags & AT_SYMLINK_NOFOLLOW))) return *r;
  return NV2PT_REAL(fstatat)(dirfd, path, st, flags);
}

NV2PT_EXPORT int fstatat64(int dirfd, const char* path, struct stat64* st, int flags) noexcept {
  if (may_be_ours_at(dirfd, path))
    if (auto r = emulated_stat(path, reinterpret_cast<struct stat*>(st), !(flags & AT_SYMLINK_NOFOLLOW))) return *r;
  return NV2PT_REAL(fstatat64)(dirfd, path, st, flags);
}

NV2PT_EXPORT int __xstat(int ver, const char* path, struct stat* st) noexcept {
  if (auto r = emulated_stat(path, st, true)) return *r;
  return NV2PT_REAL(__xstat)(ver, path, st);
}

NV2PT_EXPORT int __xstat64(int ver, const char* path, struct stat64* st) noexcept {
  if (auto r = emulated_stat(path, reinterpret_cast<struct stat*>(st), true)) return *r;
  return NV2PT_REAL(__xstat64)(ver, path, st);
}

NV2PT_EXPORT int __lxstat(int ver, const char* path, struct stat* st) noexcept {
  if (auto r = emulated_stat(path, st, false)) return *r;
  return NV2PT_REAL(__lxstat)(ver, path, st);
}

NV2PT_EXPORT int __lxstat64(int ver, const char* path, struct stat64* st) noexcept {
  if (auto r = emulated_stat(path, reinterpret_cast<struct stat*>(st), false)) return *r;
  return NV2PT_REAL(__lxstat64)(ver, path, st);
}

NV2PT_EXPORT int __fxstatat(int ver, int dirfd, const char* path, struct stat* st, int flags) noexcept {
  if (may_be_ours_at(dirfd, path))
    if (auto r = emulated_stat(path, st, !(flags & AT_SYMLINK_NOFOLLOW))) return *r;
  return NV2PT_REAL(__fxstatat)(ver, dirfd, path, st, flags);
}

NV2PT_EXPORT int __fxstatat64(int ver, int dirfd, const char* path, struct stat64* st, int flags) noexcept {
  if (may_be_ours_at(dirfd, path))
    if (auto r = emulated_stat(path, reinterpret_cast<struct stat*>(st), !(flags & AT_SYMLINK_NOFOLLOW))) return *r;
  return NV2PT_REAL(__fxstatat64)(ver, dirfd, path, st, flags);
}

// --- links and paths ---

NV2PT_EXPORT ssize_t readlink(const char* path, char* buf, size_t len) noexcept {
  if (auto r = emulated_readlink(path, buf, len)) return *r;
  return NV2PT_REAL(readlink)(path, buf, len);
}

NV2PT_EXPORT ssize_t readlinkat(int dirfd, const char* path, char* buf, size_t len) noexcept {
  if (may_be_ours_at(dirfd, path))
    if (auto r = emulated_readlink(path, buf, len)) return *r;
  return NV2PT_REAL(readlinkat)(dirfd, path, buf, len);
}

NV2PT_EXPORT ssize_t __readlink_chk(const char* path, char* buf, size_t len, size_t buflen) noexcept {
  if (len > buflen) __chk_fail();
  return readlink(path, buf, len);
}

NV2PT_EXPORT ssize_t __readlinkat_chk(int dirfd, const char* path, char* buf, size_t len, size_t buflen) noexcept {
  if (len > buflen) __chk_fail();
  return readlinkat(dirfd, path, buf, len);
}

// realpath must be wrapped by name: glibc's own readlink calls inside it cannot be interposed.
NV2PT_EXPORT char* realpath(const char* path, char* resolved) noexcept {
  if (auto r = emulated_realpath(path, resolved)) return *r;
  return NV2PT_REAL(realpath)(path, resolved);
}

NV2PT_EXPORT char* __realpath_chk(const char* path, char* resolved, size_t resolvedlen) noexcept {
  if (resolvedlen < PATH_MAX) __chk_fail();
  return realpath(path, resolved);
}

// --- fds ---

NV2PT_EXPORT int ioctl(int fd, unsigned long request, ...) noexcept {
  va_list ap;
  va_start(ap, request);
  void* arg = va_arg(ap, void*);
  va_end(ap);
  FdObject* o = ours(fd);
  if (!o) return NV2PT_REAL(ioctl)(fd, request, arg);
  ModelScope scope;
  const nv2pt::Result<long> r = Interposer::get().ioctl(fd, *o, request, reinterpret_cast<unsigned long>(arg));
  return static_cast<int>(to_errno<long>(r, -1));
}

NV2PT_EXPORT ssize_t pread(int fd, void* buf, size_t count, off_t offset) {
  FdObject* o = ours(fd);
  if (!o || o->kind == FdKind::kFile) return NV2PT_REAL(pread)(fd, buf, count, offset);
  return emulated_pread(*o, buf, count, offset);
}

NV2PT_EXPORT ssize_t pread64(int fd, void* buf, size_t count, off64_t offset) {
  FdObject* o = ours(fd);
  if (!o || o->kind == FdKind::kFile) return NV2PT_REAL(pread64)(fd, buf, count, offset);
  return emulated_pread(*o, buf, count, offset);
}

NV2PT_EXPORT ssize_t __pread_chk(int fd, void* buf, size_t nbytes, off_t offset, size_t buflen) {
  if (nbytes > buflen) __chk_fail();
  return pread(fd, buf, nbytes, offset);
}

NV2PT_EXPORT ssize_t __pread64_chk(int fd, void* buf, size_t nbytes, off64_t offset, size_t buflen) {
  if (nbytes > buflen) __chk_fail();
  return pread64(fd, buf, nbytes, offset);
}

NV2PT_EXPORT ssize_t pwrite(int fd, const void* buf, size_t count, off_t offset) {
  FdObject* o = ours(fd);
  if (!o || o->kind == FdKind::kFile) return NV2PT_REAL(pwrite)(fd, buf, count, offset);
  return emulated_pwrite(*o, buf, count, offset);
}

NV2PT_EXPORT ssize_t pwrite64(int fd, const void* buf, size_t count, off64_t offset) {
  FdObject* o = ours(fd);
  if (!o || o->kind == FdKind::kFile) return NV2PT_REAL(pwrite64)(fd, buf, count, offset);
  return emulated_pwrite(*o, buf, count, offset);
}

NV2PT_EXPORT void* mmap(void* addr, size_t length, int prot, int flags, int fd, off_t offset) noexcept {
  FdObject* o = ours(fd);
  if (!o || o->kind == FdKind::kFile) return NV2PT_REAL(mmap)(addr, length, prot, flags, fd, offset);
  return emulated_mmap(*o, addr, length, prot, flags, offset);
}

NV2PT_EXPORT void* mmap64(void* addr, size_t length, int prot, int flags, int fd, off64_t offset) noexcept {
  FdObject* o = ours(fd);
  if (!o || o->kind == FdKind::kFile) return NV2PT_REAL(mmap64)(addr, length, prot, flags, fd, offset);
  return emulated_mmap(*o, addr, length, prot, flags, offset);
}

NV2PT_EXPORT int munmap(void* addr, size_t length) noexcept {
  if (Interposer::any_device_mapping() && !bypass()) {
    ModelScope scope;
    Interposer::get().munmap(addr, length);
  }
  return NV2PT_REAL(munmap)(addr, length);
}

NV2PT_EXPORT int close(int fd) {
  if (ours(fd)) {
    ModelScope scope;
    Interposer::get().close(fd);
  }
  return NV2PT_REAL(close)(fd);
}

// --- the compat switch ---

NV2PT_EXPORT void free(void* p) noexcept {
  if (!p) return;
  if (!bypass()) {
    if (Interposer* ip = Interposer::peek(); ip && ip->compat().keep(p)) return;
  }
  static std::atomic<decltype(&::free)> slot{nullptr};
  auto* real_free = slot.load(std::memory_order_acquire);
  if (!real_free) {
    if (real::resolving) return;  // dlsym's own frees while "free" is being resolved: leak those few bytes
    real_free = real::resolve(slot, "free");
  }
  real_free(p);
}
