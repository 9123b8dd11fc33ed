// The coherent RAM of one GPU, seen through its 128 GiB window: a sparse memfd, mapped into the client with nothing
// populated, and touched only when the rule allows it:
//   - every NVLink of the GPU is trained, and
//   - the page lies inside the real RAM (nv2pt,real-memory-size, 16 GiB on a V100 SXM2 16GB).
// Any other touch is an HMI: recorded in the HmiLog, then the policy applies (fatal: the faulting thread gets
// SIGBUS; log: the page is populated with zeros and the access goes on). read()/write() (the pread/pwrite path)
// follow the same rule.
//
// Who serves a first touch depends on the links. While any link of the GPU is untrained, every mapping is registered
// with userfaultfd: each first touch reaches the service thread, which checks the rule and populates the 64 KiB
// page. Once every link is trained, the part of each mapping inside the real RAM is unregistered and the kernel's
// own shmem fault handler serves it, as the real kernel serves GPU RAM from its own fault handler
// (vfio_pci_nvgpu_mmap_fault); only the part beyond the real RAM still reaches the service. When a link drops, the
// real part is registered again; a GPU reset also drops every page-table entry (zap), so every page is checked anew.
// The mapping's address range and backing never change, only its userfaultfd registration.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>

#include "base/errno.h"
#include "platform/hmi_log.h"
#include "platform/pci_address.h"

namespace nv2pt::platform {

class GpuRam {
 public:
  struct Config {
    PciAddress gpu;
    uint64_t window_base = 0;  // host physical address of the window (gpu_hpa)
    uint64_t window_size = 0;  // 128 GiB
    uint64_t real_size = 0;    // RAM behind it
    HmiPolicy policy = HmiPolicy::kFatal;
  };

  // `links_trained` answers whether every NVLink of the GPU is trained right now; its owner calls links_changed()
  // whenever that answer may have changed. ENOMEM/EIO if the memfd or userfaultfd cannot be created.
  static Result<std::unique_ptr<GpuRam>> create(Config config, HmiLog& log, std::function<bool()> links_trained);
  ~GpuRam();

  const Config& config() const;
  void set_policy(HmiPolicy policy);

  // pread/pwrite path: offset relative to the window. EINVAL past the window. An access the rule forbids records
  // an HMI first; under the fatal policy it then raises SIGBUS in the calling thread (never returns), under the
  // log policy reads beyond real RAM give zeros and writes there are dropped.
  Result<void> read(uint64_t offset, std::span<std::byte> out);
  Result<void> write(uint64_t offset, std::span<const std::byte> in);

  // Maps [offset, offset + len) of the window at `addr` (MAP_SHARED|MAP_FIXED over the caller's reservation if
  // addr is non-null, else anywhere; 64 KiB aligned at least) with nothing populated, and registers it with the
  // userfaultfd service (all of it while a link is untrained, the part beyond the real RAM once they are all
  // trained). Returns the address. EINVAL for a range outside the window.
  Result<void*> map(void* addr, uint64_t offset, uint64_t len, int prot);
  // Forgets a mapping made by map() (the caller munmaps it).
  void unmap(void* addr, uint64_t len);

  // Pages populated so far (64 KiB model pages holding anything), for reports and tests.
  uint64_t populated_pages() const;
  // Faults the userfaultfd service thread has handled so far (trained touches of real RAM never reach it).
  uint64_t serviced_faults() const;
  // Whether every link was trained when last looked at: the real RAM is then served by the kernel.
  bool served_by_kernel() const;

  // The answer of `links_trained` may have changed. Trained: the real RAM part of every mapping leaves the
  // service. Untrained: it is registered again; pages the client has mapped stay mapped (the 64 KiB page whole,
  // as the service maps it: nothing unmaps them on a link drop), every other touch is checked.
  void links_changed();
  // Throws away the contents: the memfd is emptied, every mapping unpopulated and every page checked on its next
  // touch (whatever the links: the first touch the service allows hands the real RAM back to the kernel).
  void discard();
  // Unpopulates every mapping but keeps the contents (a GPU reset untrained the links): every mapping is
  // registered whole again and the next touch of any page is checked against the rule.
  void zap();
  // Whether pages already in the memfd are checked on their next touch after zap() (needs minor-fault
  // userfaultfd on shmem, Linux 5.14+); without it such a touch maps the page unchecked.
  bool checks_present_pages() const;

 private:
  struct Impl;
  explicit GpuRam(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace nv2pt::platform
