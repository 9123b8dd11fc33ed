// The byte encoding of the UAPI sequence fuzzer's input, shared by the fuzz target and the seed-corpus generator.
//
// An input is a list of operations. Each starts with one opcode byte (taken modulo kOpCount); its operands follow
// as little-endian integers, read front to back. An input that ends early reads zeros, so every byte string is a
// valid program.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace nv2pt::fuzz {

enum Op : uint8_t {
  kOpenContainer,    // -
  kCloseContainer,   // u8 slot
  kOpenGroup,        // u8 group (index into the host's group ids, or a raw id when >= 0x80)
  kCloseGroup,       // u8 slot
  kSetContainer,     // u8 group slot, u8 container slot
  kUnsetContainer,   // u8 group slot
  kSetIommu,         // u8 container slot, u8 type (2 v1, 7 v2, else raw)
  kContainerIoctl,   // u8 container slot, u8 call, u8 argsz mode, then the call's fields (see fuzz target)
  kGetDeviceFd,      // u8 group slot, u8 member (>= 0x80: a bad name)
  kCloseDevice,      // u8 slot
  kDeviceIoctl,      // u8 device slot, u8 call, u8 argsz mode, then fields
  kDeviceAccess,     // u8 device slot, u8 write, u8 region index, u8 pos mode, u64 pos, u16 count, data
  kDeviceMmap,       // u8 device slot, u8 region index, u8 length mode, u64 length, u64 offset-in-region,
                     // u8 unaligned, u8 read-only, u8 flags (0 mod 8: MAP_PRIVATE)
  kMunmap,           // u8 mapping slot
  // The in-kernel TCE path, one VM per input (appended: older seeds decode as before).
  kKvmMemorySlot,     // u8 slot, address operand (the slot's user address), u64 gpa, u64 size
  kKvmCreateTceTable, // u8 liobn index, u8 page shift, u32 flags, u64 offset, u64 size (both in IOMMU pages)
  kKvmReleaseTceTable,// u8 liobn index
  kKvmGroup,          // u8 group slot, u8 add (even) or del (odd)
  kKvmSetSpaprTce,    // u8 group slot, u8 liobn index
  kHcall,             // u8 call (HcallKind), u8 liobn index, u64 ioba, u64 tce (or the list's gpa), u16 npages
  // KVM_CREATE_SPAPR_TCE_64 at the edges of its bound checks: u8 liobn index, u8 page shift (12 + v % 23, raw
  // from 0xf0), u8 form (TceEdge), u64 a, u64 b. Appended: older inputs decode as before.
  kKvmCreateTceTableEdge,
  // The group fd's ioctls through vfio::Group::ioctl with raw argument buffers: u8 group slot, u8 call
  // (GroupCall), u8 where the argument points (ArgPlace), then the call's operands (see GroupCall).
  // Appended: older inputs decode as before.
  kGroupIoctl,
  // VFIO_DEVICE_PCI_HOT_RESET through the device's ioctl with everything raw: u8 device slot, u8 argsz mode
  // (natural: header + the fds written), u8 flags (bit 7 set: raw flags, a u32 below; else bit 0), u8 count mode
  // (0-1: the number of fds written, 2: a u8 below, 3: a u32 below), u8 fds written (% 8); then the raw flags,
  // the count, that many fd operands (below), and the argsz mode's own operand, each only if called for.
  kHotResetIoctl,
  // u8 which (ExtraGroup): opens one of the fuzzer's own groups beside the host's (into a free group slot).
  kOpenExtraGroup,
  // u8 source: the memlock limits the next charges read (LockedMemory::set_policy; even: the fixed 256 MiB without
  // CAP_IPC_LOCK; odd: the process's own RLIMIT_MEMLOCK and capabilities, read through getrlimit/capget, bounded
  // by the fixed limit and without CAP_IPC_LOCK, whose unbounded charge would let a registration run past the hole).
  kMemlockSource,
  // u8 n: the next call runs with its (1 + n % 32)-th allocation failing (base/fault_injection.h), as the
  // fail_nth replay of the QEMU sequence does: ENOMEM, and everything the call did so far undone.
  kFailNth,
  // A DMA by a device of a group slot, as the PHB performs it (Pe::translate, then the pinner's DMA into pinned
  // memory): u8 group slot, u8 PE (member index), u8 window (below kMaxWindows: the u64 is an offset into that
  // window, modulo its span; else the bus address itself), u64, u8 write (odd), u8 length (1 + n % 64), then the
  // bytes of a write. A DMA the TCEs refuse freezes the group's EEH PE, as the PHB does. Appended, like the op
  // after it: older inputs decode as before.
  kDeviceDma,
  // The sysfs facts the interposer answers for a PCI address (iommu_group link, devspec, ibm,loc-code): u8 form
  // (even: the machine's function n % count, n the next u8; odd: a raw address, u16 domain, u8 bus, u8 devfn).
  kSysfsFacts,
  // u8 path: how the next pins fault pages in (PagePinner::set_populate_fallback; odd: the path for kernels without
  // MADV_POPULATE_WRITE, which reads /proc/self/maps and touches every page).
  kPinPath,
  kOpCount,
};

// An fd operand (u8 v): v % 4 is the kind, v / 4 the slot: 0 a container slot's fd, 1 a group slot's, 2 a device
// slot's (an empty slot's fd number is closed: EBADF), 3 a raw int32 that follows (stdio: open but no VFIO
// object, EINVAL; negative, unused).
enum FdKind : uint8_t { kFdContainer, kFdGroup, kFdDevice, kFdRaw, kFdKindCount };

// kGroupIoctl's calls and their operands.
enum GroupCall : uint8_t {
  kGroupGetStatus,       // u8 argsz mode, u32 flags (the kernel overwrites them)
  kGroupSetContainer,    // fd operand
  kGroupUnsetContainer,  // -
  kGroupGetDeviceFd,     // u8 name form (NameForm), then its operands
  kRawGroupCall,         // u8 number (VFIO_BASE + n % 32), 64 bytes of argument
  kGroupCallCount,
};

// Where kGroupIoctl's argument points: the argument buffer, or memory the kernel's copy faults on.
enum ArgPlace : uint8_t { kArgBuffer, kArgBuffer2, kArgHole, kArgKernelHalf, kArgPlaceCount };

// Groups the default machine lacks, owned by the fuzzer (process lifetime, like the shared host): the legacy kind
// (no ownership ops, a fixed 32-bit table; the only kind a v1 container takes) with 4 KiB pages over 128 MiB and
// with 64 KiB pages over 256 MiB, and a plain PHB4 PE (IODA2 ops, 4K|64K|2M|1G pages) without NVLink. None has member devices.
enum ExtraGroup : uint8_t { kLegacyGroup4K, kLegacyGroup64K, kPhbGroup, kExtraGroupCount };
inline constexpr int kExtraGroupIdBase = 100;  // their group ids: 100 + ExtraGroup

// VFIO_GROUP_GET_DEVICE_FD's name.
enum NameForm : uint8_t {
  kNameMember,        // u8 member index: the member's name
  kNameBadMember,     // u8 n: "0004:04:00.<n>", no member
  kNameBytes,         // u8 length (% 65), that many bytes, then a NUL
  kNameTooLong,       // u8 fill byte (0 becomes 'a'): 64 KiB without a NUL (strndup_user: EINVAL)
  kNameIntoHole,      // u8 length (% 65), bytes: unterminated at the end of the last pool buffer, before the hole
  kNameFormCount,
};

// How kKvmCreateTceTableEdge builds offset and size (in IOMMU pages) from a and b, with limit = 2^64-1 >> shift:
// sizes whose entries * 8 wraps, offset + size just past (or at) the limit, and size alone past it.
enum TceEdge : uint8_t {
  kEdgePowerOfTwoSize,   // size 2^(a % 64) (2^61 and up: entries * 8 wraps), offset b % 2^20
  kEdgeWrappingSize,     // size 2^61 * (1 + a % 7) + b % 2^16: entries * 8 wraps to a small number
  kEdgeEndAtLimit,       // size 1 + a % 2^32, offset limit - size + 1 - b % 4: the end one past the limit, at it, or below
  kEdgeSizePastLimit,    // size limit + 1 + a % 2^16, offset b % 2^16
  kEdgeHugeBoth,         // offset and size limit - (a % 2^8), limit - (b % 2^8)
  kTceEdgeCount,
};

// kHcall's first operand, modulo the count.
enum HcallKind : uint8_t { kHPutTce, kHPutTceIndirect, kHStuffTce, kHGetTce, kHcallKindCount };
// LIOBNs are kLiobnBase + index % kSlots.
inline constexpr uint64_t kLiobnBase = 0x80000000;

// Container calls (kContainerIoctl's second operand, modulo the count).
enum ContainerCall : uint8_t {
  kApiVersion,
  kCheckExtension,
  kGetInfo,
  kMapDma,
  kUnmapDma,
  kRegister,
  kUnregister,
  kEnable,
  kDisable,
  kEehOp,
  kTceCreate,
  kTceRemove,
  kRawContainerCall,
  kContainerCallCount,
};

// Device calls (kDeviceIoctl's second operand).
enum DeviceCall : uint8_t {
  kDeviceInfo,
  kRegionInfo,
  kIrqInfo,
  kSetIrqs,
  kReset,
  kHotResetInfo,
  kHotReset,
  kRawDeviceCall,
  kDeviceCallCount,
};

// argsz mode: 0 the structure's own size (the common, valid case), 1 one byte short, 2 a random u16, 3 larger.
enum ArgszMode : uint8_t { kArgszExact, kArgszShort, kArgszRandom, kArgszLarge, kArgszModeCount };

// Where a vaddr operand points (u8 before the u64 value): the fuzzer keeps its own buffers and an inaccessible
// hole, so that pinning never touches memory it does not own.
enum AddressMode : uint8_t {
  kPoolBuffer,  // value: buffer index (low byte) and 64 KiB page offset (next bytes)
  kMapping,     // value: mapping slot (low byte) and offset
  kHole,        // value: page offset into a PROT_NONE reservation
  kKernelHalf,  // value | 1 << 63: never mapped in user space
  kRawAddress,  // value as is, but only used where nothing is dereferenced or pinned (MAP/UNMAP/UNREGISTER)
  kAddressModeCount,
};

// Writes an input in the encoding above.
class InputWriter {
 public:
  InputWriter& op(Op o) { return u8(o); }
  InputWriter& u8(uint8_t v) { return raw(&v, 1); }
  InputWriter& u16(uint16_t v) { return raw(&v, 2); }
  InputWriter& u32(uint32_t v) { return raw(&v, 4); }
  InputWriter& u64(uint64_t v) { return raw(&v, 8); }
  InputWriter& raw(const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    bytes_.insert(bytes_.end(), b, b + n);  // little-endian host (x86-64, ppc64le)
    return *this;
  }
  const std::vector<uint8_t>& bytes() const { return bytes_; }

 private:
  std::vector<uint8_t> bytes_;
};

// Reads it back; zeros past the end.
class InputReader {
 public:
  InputReader(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  bool done() const { return pos_ >= size_; }
  size_t size() const { return size_; }
  uint8_t u8() { return read<uint8_t>(); }
  uint16_t u16() { return read<uint16_t>(); }
  uint32_t u32() { return read<uint32_t>(); }
  uint64_t u64() { return read<uint64_t>(); }
  // Up to n bytes of payload (fewer if the input ends).
  size_t bytes(void* out, size_t n) {
    const size_t take = pos_ < size_ ? std::min(n, size_ - pos_) : 0;
    if (take) std::memcpy(out, data_ + pos_, take);
    pos_ += take;
    return take;
  }

 private:
  template <class T>
  T read() {
    T v{};
    bytes(&v, sizeof(T));
    return v;
  }
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

}  // namespace nv2pt::fuzz
