// Writes the seed corpus of the UAPI sequence fuzzer: the QEMU 7.2 realize-and-reset sequence for one GPU and its
// two bridges (the steps of vfio/qemu_sequence_test.cc) in the fuzzer's encoding, and variants of it (closes in
// other orders, link training and GPU-RAM access, KVM's in-kernel TCE path, v1, short argsz). Usage: uapi_sequence_corpus <directory>.
#include <linux/vfio.h>

#include <cstdio>
#include <string>

#include "fuzz/uapi_sequence.h"
#include "platform/npu2_bridge.h"

namespace nv2pt::fuzz {
namespace {

constexpr uint8_t kGroup4 = 0;  // index 0 of the host's group ids (4, 5, 6, 10, 11, 12)
constexpr uint8_t kGpu = 0, kBridge0 = 1, kBridge1 = 2;  // device slots, in group member order
constexpr uint8_t kGpuRamMap = 1;  // mapping slot of the GPU-RAM mmap (slot 0: BAR0)

struct Seq : InputWriter {
  // The writer's calls again, returning Seq& so that the helpers below chain with them.
  Seq& op(Op o) { return self(InputWriter::op(o)); }
  Seq& u8(uint8_t v) { return self(InputWriter::u8(v)); }
  Seq& u16(uint16_t v) { return self(InputWriter::u16(v)); }
  Seq& u32(uint32_t v) { return self(InputWriter::u32(v)); }
  Seq& u64(uint64_t v) { return self(InputWriter::u64(v)); }
  Seq& raw(const void* p, size_t n) { return self(InputWriter::raw(p, n)); }
  Seq& self(InputWriter&) { return *this; }

  Seq& container_call(uint8_t call) { return (op(kContainerIoctl).u8(0).u8(call)); }
  Seq& exact() { return (u8(kArgszExact)); }
  Seq& pool_address(uint8_t buffer, uint64_t page) {
    return (u8(kPoolBuffer).u64(buffer | page << 8));
  }
  Seq& mapping_address(uint8_t slot) { return (u8(kMapping).u64(slot)); }
  Seq& device_call(uint8_t slot, uint8_t call) { return (op(kDeviceIoctl).u8(slot).u8(call)); }
  Seq& region_info(uint8_t slot, uint8_t index) {
    return (device_call(slot, kRegionInfo).u8(index).exact());
  }
  // SET_IRQS TRIGGER with one of the fuzzer's eventfds (argsz = header + 4).
  Seq& eventfd_trigger(uint8_t slot, uint8_t index) {
    device_call(slot, kSetIrqs).u16(VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER).u8(index).u32(0).u32(1);
    return (u8(kArgszLarge).u8(4).u8(1));
  }
  Seq& config_write(uint8_t slot, uint16_t pos, uint32_t value, uint16_t size) {
    op(kDeviceAccess).u8(slot).u8(1).u8(VFIO_PCI_CONFIG_REGION_INDEX).u8(0).u64(pos).u16(size);
    return (raw(&value, size));
  }
  Seq& config_read(uint8_t slot, uint16_t pos, uint16_t size) {
    return (op(kDeviceAccess).u8(slot).u8(0).u8(VFIO_PCI_CONFIG_REGION_INDEX).u8(0).u64(pos).u16(size));
  }
  Seq& group_call(uint8_t slot, uint8_t call, uint8_t place = kArgBuffer) {
    return (op(kGroupIoctl).u8(slot).u8(call).u8(place));
  }
  Seq& container_fd(uint8_t slot) { return (u8(kFdContainer + slot * kFdKindCount)); }
  Seq& group_fd(uint8_t slot) { return (u8(kFdGroup + slot * kFdKindCount)); }
  Seq& device_fd(uint8_t slot) { return (u8(kFdDevice + slot * kFdKindCount)); }
  Seq& raw_fd(int32_t fd) { return (u8(kFdRaw).u32(static_cast<uint32_t>(fd))); }
  Seq& mmap_region(uint8_t slot, uint8_t index, uint8_t length_mode) {
    return (op(kDeviceMmap).u8(slot).u8(index).u8(length_mode).u64(0).u64(0).u8(0).u8(0).u8(1));
  }
};

// QEMU 7.2's realize of a group's first device, up to the device fd (docs/qemu-7.2.md#host-interaction-sequence):
// group, container, v2, guest RAM registration, DDW info, default window removed.
void setup(Seq& s) {
  s.op(kOpenGroup).u8(kGroup4);
  s.op(kOpenContainer);
  s.container_call(kApiVersion);
  s.container_call(kCheckExtension).u8(VFIO_SPAPR_TCE_v2_IOMMU);
  s.op(kSetContainer).u8(0).u8(0);
  s.op(kSetIommu).u8(0).u8(VFIO_SPAPR_TCE_v2_IOMMU);
  s.container_call(kRegister).u8(0).pool_address(0, 0).u64(4 << 20).exact();
  s.container_call(kGetInfo).exact();
  s.container_call(kTceRemove).u8(0).u64(0).exact();
}

// Steps 14-24 for one device: info, every region, config, BAR0 and region 9 mmaps (GPU), IRQs.
void realize(Seq& s, uint8_t member, bool gpu) {
  s.op(kGetDeviceFd).u8(0).u8(member);
  s.device_call(member, kDeviceInfo).exact();
  for (uint8_t i = 0; i < 10; ++i) s.region_info(member, i);
  s.config_read(member, 0, 256);
  if (gpu) s.mmap_region(member, VFIO_PCI_BAR0_REGION_INDEX, 0);
  s.mmap_region(member, 9, 0);
  s.eventfd_trigger(member, VFIO_PCI_INTX_IRQ_INDEX);
  s.eventfd_trigger(member, VFIO_PCI_ERR_IRQ_INDEX);
  s.eventfd_trigger(member, VFIO_PCI_REQ_IRQ_INDEX);
}

// The first machine reset and what follows it: command 0, INTx off, reset, window, GPU RAM registration, EEH,
// guest TCE traffic.
void reset_and_map(Seq& s) {
  for (uint8_t d : {kBridge1, kBridge0, kGpu}) {
    s.config_write(d, 4, 0, 2);
    s.device_call(d, kSetIrqs).u16(VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER).u8(0).u32(0).u32(0).exact().u8(1);
    s.device_call(d, kReset);
    s.eventfd_trigger(d, VFIO_PCI_INTX_IRQ_INDEX);
  }
  s.container_call(kTceCreate).u8(0).u8(16).u64(1ull << 32).u8(2).exact();
  s.container_call(kRegister).u8(0).mapping_address(kGpuRamMap).u64(128ull << 30).exact();
  s.container_call(kEehOp).u8(0).u8(VFIO_EEH_PE_ENABLE).u32(0).u32(0).u64(0).u64(0).exact();
  s.container_call(kMapDma).u8(3).pool_address(0, 0).u64(0).u64(4 << 20).exact();
  s.container_call(kMapDma).u8(3).mapping_address(kGpuRamMap).u64(1ull << 31).u64(256 << 20).exact();
  s.container_call(kUnmapDma).u8(0).u64(0).u64(1 << 20).exact();
}

// skiboot's link training through each bridge's config space, then GPU RAM through pread/pwrite.
void train_and_touch(Seq& s) {
  for (uint8_t b : {kBridge0, kBridge1}) {
    for (uint32_t procedure : {4u, 5u, 6u, 9u}) {
      s.config_write(b, platform::Npu2Bridge::kProcControl, procedure, 4);
      for (int poll = 0; poll < 4; ++poll) s.config_read(b, platform::Npu2Bridge::kProcStatus, 4);
    }
  }
  const uint32_t word = 0x12345678;
  s.op(kDeviceAccess).u8(kGpu).u8(1).u8(9).u8(0).u64(0x1234).u16(4).raw(&word, 4);
  s.op(kDeviceAccess).u8(kGpu).u8(0).u8(9).u8(0).u64(0x1234).u16(4);
}

// QEMU with KVM: guest RAM (pool buffer 0) as memory slot 0 at gpa 0, a guest table of 64 KiB pages over the DDW
// window made in reset_and_map (4 GiB at 1 << 59), the group added and attached, then the TCE hypercalls.
void kvm_tce_path(Seq& s) {
  constexpr uint64_t kWindow = 1ull << 59;
  s.op(kKvmMemorySlot).u8(0).pool_address(0, 0).u64(0).u64(4 << 20);
  s.op(kKvmCreateTceTable).u8(0).u8(16).u32(0).u64(kWindow >> 16).u64((1ull << 32) >> 16);
  s.op(kKvmGroup).u8(0).u8(0);
  s.op(kKvmSetSpaprTce).u8(0).u8(0);
  s.op(kHcall).u8(kHPutTce).u8(0).u64(kWindow + (64 << 20)).u64(0x10000 | 3).u16(1);
  s.op(kHcall).u8(kHPutTceIndirect).u8(0).u64(kWindow + (128 << 20)).u64(0).u16(8);
  s.op(kHcall).u8(kHGetTce).u8(0).u64(kWindow + (64 << 20)).u64(0).u16(1);
  s.op(kHcall).u8(kHStuffTce).u8(0).u64(kWindow + (64 << 20)).u64(0).u16(16);
  s.container_call(kTceRemove).u8(0).u64(kWindow).exact();  // the window goes while the guest table holds it
  s.op(kHcall).u8(kHPutTce).u8(0).u64(kWindow).u64(0x20000 | 1).u16(1);
}

// The group fd's ioctls with raw arguments: QEMU's order (status, container by fd, device by name), then every
// way to get them wrong: bad fds of each kind, a second container, names that are no member, too long or run
// into unmapped memory, arguments in unmapped memory, unset with a device open, raw numbers.
void close_like_qemu(Seq& s);

void group_ioctls(Seq& s) {
  s.op(kOpenGroup).u8(kGroup4);
  s.op(kOpenContainer);
  s.group_call(0, kGroupGetStatus).exact().u32(0);
  s.group_call(0, kGroupGetStatus).u8(kArgszShort).u32(0);
  s.group_call(0, kGroupGetStatus, kArgHole).exact().u32(0);
  s.group_call(0, kGroupSetContainer).raw_fd(-1);
  s.group_call(0, kGroupSetContainer).raw_fd(1);       // open, no VFIO object: EINVAL
  s.group_call(0, kGroupSetContainer).raw_fd(12345);   // closed: EBADF
  s.group_call(0, kGroupSetContainer).group_fd(0);     // a group fd: EINVAL
  s.group_call(0, kGroupSetContainer).container_fd(1); // an empty slot: EBADF
  s.group_call(0, kGroupSetContainer, kArgKernelHalf).container_fd(0);
  s.group_call(0, kGroupGetDeviceFd).u8(kNameMember).u8(0);  // no container yet: EINVAL
  s.group_call(0, kGroupSetContainer).container_fd(0);
  s.group_call(0, kGroupGetStatus).exact().u32(~0u);
  s.group_call(0, kGroupGetDeviceFd).u8(kNameMember).u8(0);  // container without an IOMMU: EINVAL
  s.op(kSetIommu).u8(0).u8(VFIO_SPAPR_TCE_v2_IOMMU);
  s.group_call(0, kGroupSetContainer).container_fd(0);  // set already: EINVAL
  s.group_call(0, kGroupGetDeviceFd).u8(kNameBadMember).u8(7);
  const char junk[] = "0004:04:00.0 trailing";
  s.group_call(0, kGroupGetDeviceFd).u8(kNameBytes).u8(sizeof(junk) - 1).raw(junk, sizeof(junk) - 1);
  s.group_call(0, kGroupGetDeviceFd).u8(kNameTooLong).u8('0');
  s.group_call(0, kGroupGetDeviceFd).u8(kNameIntoHole).u8(12).raw("0004:04:00.0", 12);
  s.group_call(0, kGroupGetDeviceFd, kArgKernelHalf).u8(kNameMember).u8(0);
  for (uint8_t m = 0; m < 3; ++m) s.group_call(0, kGroupGetDeviceFd).u8(kNameMember).u8(m);
  s.group_call(0, kGroupGetDeviceFd).u8(kNameMember).u8(0);  // the GPU again: a second fd
  s.group_call(0, kGroupUnsetContainer);                      // devices open: EBUSY
  char raw[64] = "0004:04:00.1";  // a member's name, or fd 0x34303030 (closed) to SET_CONTAINER
  for (uint8_t n : {3, 4, 5, 6, 7, 0}) s.group_call(0, kRawGroupCall).u8(n).raw(raw, sizeof(raw));
  for (uint8_t d = 0; d < 4; ++d) s.op(kCloseDevice).u8(d);
  s.group_call(0, kGroupUnsetContainer);
  s.group_call(0, kGroupUnsetContainer);  // none: EINVAL
  s.op(kCloseGroup).u8(0);
  s.op(kCloseContainer).u8(0);
}

// VFIO_DEVICE_PCI_HOT_RESET with the group fds in the buffer: the valid one (the GPU's own group), then counts,
// argsz, flags and fds that are wrong.
void hot_resets(Seq& s) {
  setup(s);
  s.op(kGetDeviceFd).u8(0).u8(kGpu);
  auto reset = [&](uint8_t flags, uint8_t count_mode, uint8_t nfds) -> Seq& {
    return s.op(kHotResetIoctl).u8(kGpu).u8(kArgszExact).u8(flags).u8(count_mode).u8(nfds);
  };
  reset(0, 0, 1).group_fd(0);                              // the group's own fd: reset
  reset(0, 0, 2).group_fd(0).group_fd(0);                  // more fds than functions to reset: EINVAL
  reset(0, 0, 0);                                          // count 0: EINVAL
  reset(0, 2, 1).u8(1).group_fd(0);
  reset(1, 0, 1).group_fd(0);                              // a flag: EINVAL
  reset(0x80, 0, 1).u32(0x80000000u).group_fd(0);
  reset(0, 0, 1).container_fd(0);                          // a container fd: EINVAL
  reset(0, 0, 1).device_fd(0);                             // a device fd: EINVAL
  reset(0, 0, 1).raw_fd(-1);                               // EBADF
  reset(0, 0, 1).group_fd(3);                              // an empty slot: EBADF
  reset(0, 3, 1).u32(0x40000000u).group_fd(0);             // a huge count
  s.op(kHotResetIoctl).u8(kGpu).u8(kArgszShort).u8(0).u8(0).u8(1).group_fd(0);
  s.op(kHotResetIoctl).u8(kGpu).u8(kArgszRandom).u8(0).u8(0).u8(1).group_fd(0).u16(4);
  s.op(kHotResetIoctl).u8(kGpu).u8(kArgszRandom).u8(0).u8(0).u8(1).group_fd(0).u16(0);
  close_like_qemu(s);
}

// A v1 container over the legacy group (4 KiB or 64 KiB IOMMU pages): its fixed 32-bit table, ENABLE, v1 MAP
// and UNMAP of pool memory (pinned page by page), EEH, DISABLE, and the group's detach clearing the table.
void v1_legacy(Seq& s, uint8_t which) {
  s.op(kOpenExtraGroup).u8(which);
  s.op(kOpenContainer);
  s.op(kSetContainer).u8(0).u8(0);
  s.op(kSetIommu).u8(0).u8(VFIO_SPAPR_TCE_IOMMU);
  s.container_call(kGetInfo).exact();
  s.container_call(kMapDma).u8(3).pool_address(1, 0).u64(0).u64(1 << 16).exact();  // not enabled: EPERM
  s.container_call(kEnable);
  s.container_call(kEnable);  // EBUSY
  s.container_call(kMapDma).u8(3).pool_address(1, 0).u64(0).u64(1 << 20).exact();
  s.container_call(kMapDma).u8(1).pool_address(1, 2).u64(1 << 20).u64(1 << 18).exact();
  s.container_call(kMapDma).u8(3).pool_address(1, 0).u64(0).u64(1 << 16).exact();  // mapped already: EBUSY
  s.container_call(kMapDma).u8(3).u8(kHole).u64(0).u64(4 << 20).u64(1 << 16).exact();
  s.container_call(kUnmapDma).u8(0).u64(1 << 16).u64(1 << 16).exact();
  s.container_call(kRegister).u8(0).pool_address(0, 0).u64(1 << 20).exact();  // v2 only
  s.container_call(kEehOp).u8(0).u8(VFIO_EEH_PE_ENABLE).u32(0).u32(0).u64(0).u64(0).exact();
  s.container_call(kTceCreate).u8(0).u8(16).u64(1ull << 32).u8(1).exact();
  s.container_call(kDisable);
  s.container_call(kMapDma).u8(3).pool_address(1, 4).u64(1 << 21).u64(1 << 16).exact();
  s.op(kOpenGroup).u8(kGroup4);
  s.op(kSetContainer).u8(1).u8(0);  // an NVLink group beside the legacy one
  s.op(kCloseGroup).u8(0);          // detach: the table cleared, its pins dropped
  s.op(kCloseGroup).u8(1);
  s.op(kCloseContainer).u8(0);
}

// A plain PHB group (IODA2, 2M and 1G pages) with a v2 container over the pool's 2 MiB-page buffers: a window of
// 2 MiB IOMMU pages, registrations and maps of huge pages; then pinning until the model's RAM runs out, and the
// process's own memlock limit.
void phb_huge_pages(Seq& s) {
  s.op(kOpenExtraGroup).u8(kPhbGroup);
  s.op(kOpenContainer);
  s.op(kSetContainer).u8(0).u8(0);
  s.op(kSetIommu).u8(0).u8(VFIO_SPAPR_TCE_v2_IOMMU);
  s.container_call(kGetInfo).exact();
  s.container_call(kRegister).u8(0).pool_address(2, 0).u64(8 << 20).exact();
  s.container_call(kTceCreate).u8(0).u8(21).u64(1ull << 32).u8(1).exact();
  s.container_call(kMapDma).u8(3).pool_address(2, 0).u64(1ull << 59).u64(8 << 20).exact();
  s.container_call(kMapDma).u8(3).pool_address(2, 1).u64((1ull << 59) + (16 << 20)).u64(2 << 20).exact();
  s.container_call(kUnmapDma).u8(0).u64(1ull << 59).u64(2 << 20).exact();
  s.container_call(kRegister).u8(0).pool_address(0, 0).u64(8 << 20).exact();   // 8 of 14 MiB left: fits
  s.container_call(kRegister).u8(0).pool_address(0, 0).u64(16 << 20).exact();  // overlaps, and no frames
  s.container_call(kUnregister).u8(0).pool_address(0, 0).u64(8 << 20).exact();
  s.container_call(kRegister).u8(0).pool_address(0, 2).u64(6 << 20).exact();
  s.op(kMemlockSource).u8(1);  // the process's own limit, which may be lower
  s.container_call(kRegister).u8(0).pool_address(0, 0).u64(1 << 17).exact();
  s.container_call(kTceCreate).u8(0).u8(16).u64(1ull << 36).u8(3).exact();
  s.op(kMemlockSource).u8(0);
  s.container_call(kTceRemove).u8(0).u64(1ull << 59).exact();
  s.op(kCloseGroup).u8(0);
  s.op(kCloseContainer).u8(0);
}

void close_like_qemu(Seq& s) {
  for (uint8_t m = 0; m < 4; ++m) s.op(kMunmap).u8(m);
  for (uint8_t d : {kGpu, kBridge0, kBridge1}) s.op(kCloseDevice).u8(d);
  s.op(kCloseGroup).u8(0);
  s.op(kCloseContainer).u8(0);
}

void close_container_first(Seq& s) {
  s.op(kCloseContainer).u8(0);
  s.op(kCloseGroup).u8(0);
  for (uint8_t d : {kBridge1, kGpu, kBridge0}) s.op(kCloseDevice).u8(d);
  for (uint8_t m = 0; m < 4; ++m) s.op(kMunmap).u8(m);
}

bool write_file(const std::string& path, const std::vector<uint8_t>& bytes) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return false;
  const bool ok = std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size();
  return std::fclose(f) == 0 && ok;
}

}  // namespace
}  // namespace nv2pt::fuzz

int main(int argc, char** argv) {
  using namespace nv2pt::fuzz;
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <corpus directory>\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  auto qemu = [](bool train) {
    Seq s;
    setup(s);
    realize(s, kGpu, true);
    realize(s, kBridge0, false);
    realize(s, kBridge1, false);
    reset_and_map(s);
    if (train) train_and_touch(s);
    return s;
  };
  Seq plain = qemu(false);
  close_like_qemu(plain);
  Seq reversed = qemu(false);
  close_container_first(reversed);
  Seq trained = qemu(true);
  close_like_qemu(trained);
  // The device's side, after reset_and_map left guest RAM mapped at 1-4 MiB and GPU RAM at 2 GiB of the DDW
  // window (window 0, the default one being gone): DMA through the GPU's and a bridge's PE into guest RAM (written,
  // read back), where no TCE is (EFAULT), into GPU RAM, and at a raw bus address.
  Seq dma = qemu(false);
  const uint64_t word = 0x0123456789abcdef;
  dma.op(kDeviceDma).u8(0).u8(0).u8(0).u64(0x101000).u8(1).u8(7).raw(&word, 8);
  dma.op(kDeviceDma).u8(0).u8(0).u8(0).u64(0x101000).u8(0).u8(7);
  dma.op(kDeviceDma).u8(0).u8(1).u8(0).u64(0x10fffc).u8(1).u8(7).raw(&word, 8);  // a bridge's PE; the page's end
  dma.op(kDeviceDma).u8(0).u8(0).u8(0).u64(0x1000).u8(0).u8(7);                  // unmapped: EFAULT, frozen
  for (uint32_t op : {VFIO_EEH_PE_GET_STATE, VFIO_EEH_PE_UNFREEZE_IO, VFIO_EEH_PE_GET_STATE, VFIO_EEH_PE_UNFREEZE_DMA,
                      VFIO_EEH_PE_GET_STATE})
    dma.container_call(kEehOp).u8(0).u8(static_cast<uint8_t>(op)).u32(0).u32(0).u64(0).u64(0).exact();
  dma.op(kDeviceDma).u8(0).u8(0).u8(0).u64((2ull << 30) + 0x40).u8(0).u8(63);    // GPU RAM
  dma.op(kDeviceDma).u8(0).u8(0).u8(0xff).u64(0x102000).u8(1).u8(7).raw(&word, 8);
  // REGISTER through the pinning path for kernels without MADV_POPULATE_WRITE: pool memory, then into the hole.
  dma.op(kPinPath).u8(1);
  dma.container_call(kRegister).u8(0).pool_address(1, 0).u64(1 << 20).exact();
  dma.container_call(kRegister).u8(0).pool_address(3, 48).u64(2 << 20).exact();  // runs into the hole: EFAULT
  dma.container_call(kUnregister).u8(0).pool_address(1, 0).u64(1 << 20).exact();
  dma.op(kPinPath).u8(0);
  for (uint8_t n = 0; n < 4; ++n) dma.op(kSysfsFacts).u8(0).u8(n);  // the machine's functions, then raw addresses
  dma.op(kSysfsFacts).u8(1).u16(4).u8(4).u8(0);
  dma.op(kSysfsFacts).u8(1).u16(0x77).u8(1).u8(0);
  close_like_qemu(dma);
  // Two containers in one address space: the first registers guest RAM, the second maps it (the mm's
  // registrations are shared) and outlives the first, whose release leaves the region orphaned. Regression input
  // of the fuzzer's balance check, which took that region for a leak.
  Seq orphan;
  orphan.op(kOpenGroup).u8(kGroup4).op(kOpenContainer).op(kSetContainer).u8(0).u8(0);
  orphan.op(kSetIommu).u8(0).u8(VFIO_SPAPR_TCE_v2_IOMMU);
  orphan.container_call(kRegister).u8(0).pool_address(0, 0).u64(4 << 20).exact();
  orphan.op(kOpenGroup).u8(1).op(kOpenContainer).op(kSetContainer).u8(1).u8(1);
  orphan.op(kSetIommu).u8(1).u8(VFIO_SPAPR_TCE_v2_IOMMU);
  orphan.op(kContainerIoctl).u8(1).u8(kRegister).u8(0).pool_address(1, 0).u64(1 << 16).exact();
  orphan.op(kContainerIoctl).u8(1).u8(kMapDma).u8(3).pool_address(0, 0).u64(0).u64(1 << 16).exact();
  orphan.op(kCloseGroup).u8(0).op(kCloseContainer).u8(0);  // the first container goes: the region stays
  // A guest clears through KVM an entry a v1 container mapped (the kernel drops the TCE and the pin stays for
  // good), and maps over it with memory another container registered. Regression input of the fuzzer's balance
  // check, which found the pin left.
  Seq kvm_v1;
  kvm_v1.op(kOpenExtraGroup).u8(kLegacyGroup4K).op(kOpenContainer).op(kSetContainer).u8(0).u8(0);
  kvm_v1.op(kSetIommu).u8(0).u8(VFIO_SPAPR_TCE_IOMMU);
  kvm_v1.container_call(kEnable);
  kvm_v1.container_call(kMapDma).u8(3).pool_address(1, 0).u64(0).u64(1 << 16).exact();
  kvm_v1.op(kOpenExtraGroup).u8(kPhbGroup).op(kOpenContainer).op(kSetContainer).u8(1).u8(1);
  kvm_v1.op(kSetIommu).u8(1).u8(VFIO_SPAPR_TCE_v2_IOMMU);
  kvm_v1.op(kContainerIoctl).u8(1).u8(kRegister).u8(0).pool_address(1, 0).u64(1 << 20).exact();
  kvm_v1.op(kKvmMemorySlot).u8(0).pool_address(1, 0).u64(0).u64(1 << 20);
  kvm_v1.op(kKvmCreateTceTable).u8(0).u8(12).u32(0).u64(0).u64((128 << 20) >> 12);
  kvm_v1.op(kKvmGroup).u8(0).u8(0);
  kvm_v1.op(kKvmSetSpaprTce).u8(0).u8(0);
  kvm_v1.op(kHcall).u8(kHPutTce).u8(0).u64(0).u64(0).u16(1);
  kvm_v1.op(kHcall).u8(kHStuffTce).u8(0).u64(0).u64(0).u16(16);
  kvm_v1.op(kHcall).u8(kHPutTce).u8(0).u64(1 << 12).u64((1 << 12) | 3).u16(1);
  kvm_v1.container_call(kUnmapDma).u8(0).u64(0).u64(1 << 16).exact();
  kvm_v1.op(kHcall).u8(kHPutTce).u8(0).u64(0).u64(0).u16(1);
  Seq with_kvm = qemu(false);
  kvm_tce_path(with_kvm);
  close_like_qemu(with_kvm);
  Seq v1;  // a v1 container refuses the NVLink group; its calls then fail in every way
  v1.op(kOpenGroup).u8(kGroup4).op(kOpenContainer).op(kSetContainer).u8(0).u8(0).op(kSetIommu).u8(0).u8(2);
  v1.container_call(kEnable);
  v1.container_call(kMapDma).u8(3).pool_address(1, 0).u64(0).u64(1 << 16).exact();
  v1.container_call(kDisable);
  Seq short_args;  // every container call with argsz one byte short
  setup(short_args);
  short_args.container_call(kGetInfo).u8(kArgszShort);
  short_args.container_call(kMapDma).u8(3).pool_address(0, 0).u64(0).u64(1 << 16).u8(kArgszShort);
  short_args.container_call(kTceCreate).u8(0).u8(16).u64(1ull << 32).u8(2).u8(kArgszShort);
  short_args.container_call(kUnregister).u8(0).pool_address(0, 0).u64(4 << 20).u8(kArgszShort);
  // KVM_CREATE_SPAPR_TCE_64 past its bounds, then the hypercalls on the table if it was made. Regression inputs:
  // 2^61 entries of 8 bytes wrapped to a table of no pages that passed the bound check (offset + size compared
  // with wrapping arithmetic), and H_PUT_TCE/H_GET_TCE then wrote and read past its page array.
  Seq tce64_wrap;
  tce64_wrap.op(kKvmCreateTceTableEdge).u8(0).u8(0).u8(kEdgeWrappingSize).u64(0).u64(0);
  tce64_wrap.op(kHcall).u8(kHPutTce).u8(0).u64(0).u64(0x10000 | 3).u16(1);
  tce64_wrap.op(kHcall).u8(kHGetTce).u8(0).u64(1ull << 40).u64(0).u16(1);
  Seq tce64_limit;  // the end of the table one past the limit, at it and one below it; then size alone past it
  for (uint8_t past = 0; past < 3; ++past) {
    tce64_limit.op(kKvmCreateTceTableEdge).u8(past).u8(22).u8(kEdgeEndAtLimit).u64(15).u64(past);
    tce64_limit.op(kHcall).u8(kHPutTce).u8(past).u64(~0ull << 34).u64(0x10000 | 3).u16(1);
  }
  tce64_limit.op(kKvmCreateTceTableEdge).u8(3).u8(0).u8(kEdgeSizePastLimit).u64(0).u64(0);
  tce64_limit.op(kHcall).u8(kHStuffTce).u8(3).u64(0).u64(0).u16(64);
  Seq groups;
  group_ioctls(groups);
  Seq resets;
  hot_resets(resets);
  Seq legacy4k, legacy64k, phb;
  v1_legacy(legacy4k, kLegacyGroup4K);
  v1_legacy(legacy64k, kLegacyGroup64K);
  phb_huge_pages(phb);
  // The QEMU sequence with an allocation failing in the calls that allocate: the default window, REGISTER, the
  // DDW window, SET_CONTAINER (the group list node), GET_DEVICE_FD (extra regions), MAP (table levels).
  Seq fail_nth;
  for (uint8_t n = 0; n < 4; ++n) {
    fail_nth.op(kOpenGroup).u8(kGroup4).op(kOpenContainer);
    fail_nth.op(kFailNth).u8(n).op(kSetContainer).u8(0).u8(0);
    fail_nth.op(kSetContainer).u8(0).u8(0);
    fail_nth.op(kFailNth).u8(n).op(kSetIommu).u8(0).u8(VFIO_SPAPR_TCE_v2_IOMMU);
    fail_nth.op(kSetIommu).u8(0).u8(VFIO_SPAPR_TCE_v2_IOMMU);
    fail_nth.op(kFailNth).u8(n).container_call(kRegister).u8(0).pool_address(0, 0).u64(4 << 20).exact();
    fail_nth.container_call(kRegister).u8(0).pool_address(0, 0).u64(4 << 20).exact();
    fail_nth.op(kFailNth).u8(n).container_call(kTceCreate).u8(0).u8(16).u64(1ull << 32).u8(2).exact();
    fail_nth.container_call(kTceCreate).u8(0).u8(16).u64(1ull << 32).u8(2).exact();
    fail_nth.op(kFailNth).u8(n).op(kGetDeviceFd).u8(0).u8(kGpu);
    fail_nth.op(kGetDeviceFd).u8(0).u8(kGpu);
    fail_nth.op(kFailNth).u8(n).container_call(kMapDma).u8(3).pool_address(0, 0).u64(1ull << 59).u64(4 << 20).exact();
    fail_nth.container_call(kMapDma).u8(3).pool_address(0, 0).u64(1ull << 59).u64(4 << 20).exact();
    close_like_qemu(fail_nth);
  }
  const std::pair<const char*, const Seq*> seeds[] = {
      {"fail-nth", &fail_nth},
      {"group-ioctls", &groups}, {"hot-reset-ioctl", &resets}, {"v1-legacy-group-4k", &legacy4k},
      {"v1-legacy-group-64k", &legacy64k}, {"phb-group-huge-pages", &phb},
      {"kvm-tce-64-entries-wrap", &tce64_wrap}, {"kvm-tce-64-at-limit", &tce64_limit},
      {"qemu-7.2", &plain}, {"qemu-7.2-close-container-first", &reversed}, {"qemu-7.2-train-and-touch", &trained},
      {"v1-container", &v1}, {"short-argsz", &short_args}, {"qemu-7.2-kvm-tce", &with_kvm},
      {"qemu-7.2-dma", &dma}, {"release-while-another-container-maps", &orphan},
      {"kvm-clears-v1-mapping", &kvm_v1}};
  for (auto [name, seq] : seeds) {
    if (!write_file(dir + "/" + name, seq->bytes())) {
      std::perror(name);
      return 1;
    }
  }
  return 0;
}
