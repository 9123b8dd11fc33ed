#include "platform/sparse_memfd.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <utility>

#include "base/checked.h"

namespace nv2pt::platform {

namespace {

bool span_inside(uint64_t offset, uint64_t len, uint64_t size) {
  const auto end = checked_add(offset, len);
  return end && *end <= size;
}

}  // namespace

Result<SparseMemfd> SparseMemfd::create(const std::string& name, uint64_t size) {
  if (size > static_cast<uint64_t>(INT64_MAX)) return fail(kEINVAL);
  const int fd = memfd_create(name.c_str(), MFD_CLOEXEC);
  if (fd < 0) return fail(kENOMEM);
  if (ftruncate(fd, static_cast<off_t>(size)) != 0) {
    close(fd);
    return fail(kENOMEM);
  }
  return SparseMemfd(fd, size);
}

SparseMemfd::SparseMemfd(SparseMemfd&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), size_(std::exchange(other.size_, 0)) {}

SparseMemfd& SparseMemfd::operator=(SparseMemfd&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) close(fd_);
    fd_ = std::exchange(other.fd_, -1);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

SparseMemfd::~SparseMemfd() {
  if (fd_ >= 0) close(fd_);
}

Result<void> SparseMemfd::read(uint64_t offset, void* out, uint64_t len) const {
  if (!span_inside(offset, len, size_)) return fail(kEINVAL);
  auto* p = static_cast<char*>(out);
  while (len > 0) {
    const ssize_t n = pread(fd_, p, len, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return fail(kEIO);
    p += n;
    offset += static_cast<uint64_t>(n);
    len -= static_cast<uint64_t>(n);
  }
  return {};
}

Result<void> SparseMemfd::write(uint64_t offset, const void* in, uint64_t len) const {
  if (!span_inside(offset, len, size_)) return fail(kEINVAL);
  const auto* p = static_cast<const char*>(in);
  while (len > 0) {
    const ssize_t n = pwrite(fd_, p, len, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return fail(kEIO);
    p += n;
    offset += static_cast<uint64_t>(n);
    len -= static_cast<uint64_t>(n);
  }
  return {};
}

Result<void> SparseMemfd::discard() const {
  if (size_ == 0) return {};
  if (fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, static_cast<off_t>(size_)) != 0)
    return fail(kEIO);
  return {};
}

Result<void> SparseMemfd::for_each_data_extent(uint64_t from, uint64_t to,
                                              const std::function<void(uint64_t, uint64_t)>& extent) const {
  to = std::min(to, size_);
  while (from < to) {
    const off_t data = lseek(fd_, static_cast<off_t>(from), SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) return {};  // no data at or after `from`
      return fail(kEIO);
    }
    if (static_cast<uint64_t>(data) >= to) return {};
    const off_t hole = lseek(fd_, data, SEEK_HOLE);  // the end of the file counts as a hole
    if (hole < 0) return fail(kEIO);
    const uint64_t end = std::min(static_cast<uint64_t>(hole), to);
    extent(static_cast<uint64_t>(data), end);
    from = end;
  }
  return {};
}

}  // namespace nv2pt::platform
