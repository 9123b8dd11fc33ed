// An owned, sparse memfd: the backing of a BAR, an ATSD block or a GPU's RAM. Only ftruncate()d, so it costs no
// memory until pages are written; vfio offers the fd for mmap.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "base/errno.h"

namespace nv2pt::platform {

class SparseMemfd {
 public:
  // memfd_create(name, MFD_CLOEXEC) + ftruncate(size). ENOMEM if the kernel refuses either.
  static Result<SparseMemfd> create(const std::string& name, uint64_t size);

  SparseMemfd() = default;
  SparseMemfd(SparseMemfd&& other) noexcept;
  SparseMemfd& operator=(SparseMemfd&& other) noexcept;
  SparseMemfd(const SparseMemfd&) = delete;
  SparseMemfd& operator=(const SparseMemfd&) = delete;
  ~SparseMemfd();

  int fd() const { return fd_; }
  uint64_t size() const { return size_; }
  bool valid() const { return fd_ >= 0; }

  // pread/pwrite of the whole span; EINVAL if it leaves the file, EIO on a short transfer.
  Result<void> read(uint64_t offset, void* out, uint64_t len) const;
  Result<void> write(uint64_t offset, const void* in, uint64_t len) const;
  // Frees every page (the contents read as zeros again; mappings fault again).
  Result<void> discard() const;
  // Calls `extent(start, end)` for each run of [from, to) that holds pages (SEEK_DATA/SEEK_HOLE: written,
  // faulted in or swapped out), in order. EIO if the kernel cannot tell.
  Result<void> for_each_data_extent(uint64_t from, uint64_t to,
                                    const std::function<void(uint64_t, uint64_t)>& extent) const;

 private:
  SparseMemfd(int fd, uint64_t size) : fd_(fd), size_(size) {}
  int fd_ = -1;
  uint64_t size_ = 0;
};

}  // namespace nv2pt::platform
