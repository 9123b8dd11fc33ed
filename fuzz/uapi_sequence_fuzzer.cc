// libFuzzer target: one input is a sequence of VFIO and KVM calls (uapi_sequence.h) against a vfio::Host over the
// default machine, one host for every input (each input closes what it opened): container and group fds opened,
// attached and closed in any order, every container and group ioctl, device fds with their ioctls, pread/pwrite and
// mmap, a VM's memory slots, guest TCE tables and hypercalls, all with random argsz and fields. After every call the
// invariants of docs/kernel/invariants.md must hold over the address space and the live containers, and what the
// fuzzer holds must be what the model reports (open groups and devices, the groups' VM, mappings, registrations);
// once everything is closed nothing may stay locked, pinned or registered (but device memory kept by a GPU-RAM
// release with live TCEs, as vfio_pci_nvgpu_release keeps it, and memory orphaned by a container released while
// another mapped it, as tce_iommu_release leaves it). Any violation aborts with the report.
//
// Memory the model pins or dereferences is always the fuzzer's own: vaddrs come from a pool of buffers, the
// client's own mappings of device regions, a PROT_NONE hole, or the kernel half of the address space; raw values
// go only where nothing is touched. Every ioctl argument points into a 128 KiB buffer of which only what the
// client hands over is addressable: max(argsz, the kernel's minsz) bytes; the rest is poisoned, so ASan reports
// any read or write past what the kernel would copy. The HMI policy is `log` (`fatal` raises SIGBUS by design).
#include <sanitizer/asan_interface.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "base/fault_injection.h"
#include "base/host_page.h"
#include "iommu/pe.h"
#include "iommu/table_group.h"
#include "fuzz/uapi_sequence.h"
#include "kvm/vm.h"
#include "mm/page_shift_source.h"
#include "vfio/host.h"
#include "vfio/invariant_checker.h"
#include "vfio/test_groups.h"

namespace nv2pt::fuzz {
namespace {

constexpr size_t kSlots = 4;
constexpr size_t kPoolBuffers = 4;
constexpr uint64_t kPoolBufferSize = 4ull << 20;
constexpr uint64_t kMemlockBytes = 256ull << 20;  // the client's RLIMIT_MEMLOCK, without CAP_IPC_LOCK
// The buffers sit side by side with the hole right after them, and the hole is larger than any registration the
// memlock limit lets through: a range starting in the pool never reaches memory the fuzzer does not own (pinning
// stops with EFAULT at the hole). Ranges across buffers, and from buffers into the hole, stay possible.
constexpr uint64_t kHoleSize = kMemlockBytes + (64ull << 20);
constexpr size_t kArgBufferSize = 128 << 10;  // > any argsz (u16) plus the largest header
constexpr size_t kEventfds = 4;
// Buffers 2 and 3 are presented as backed by 2 MiB pages (hugetlb), so registrations, TCE windows and KVM tables
// of larger IOMMU pages have memory to work on; the pool is aligned to 16 MiB for that.
constexpr unsigned kHugeShift = 21;
constexpr uint64_t kPoolAlign = 16ull << 20;
// The model's host RAM: two ranges of 14 MiB in all, less than the pool's 16 MiB, so that pinning can run out of
// frames (and a huge page finds no aligned run) before the memlock limit stops it.
constexpr mm::PhysRange kRam[] = {{0, 8ull << 20}, {1ull << 30, 6ull << 20}};

// Process-lifetime resources: the buffers registrations may pin, the hole, eventfds for SET_IRQS.
struct Pool {
  Pool() {
    const uint64_t base = reserve(kPoolBuffers * kPoolBufferSize + kHoleSize, PROT_NONE, kPoolAlign);
    for (size_t i = 0; i < kPoolBuffers; ++i) buffers[i] = base + i * kPoolBufferSize;
    if (mprotect(reinterpret_cast<void*>(base), kPoolBuffers * kPoolBufferSize, PROT_READ | PROT_WRITE) != 0) abort();
    // Transparent huge pages where the kernel allows them: the page walk of every pin (MADV_POPULATE_WRITE, as
    // the kernel's GUP) then steps 2 MiB at a time, and pinning was a sixth of the fuzzer's time. Not hugetlb, so
    // nothing the model reads (page shifts from /proc/self/smaps) changes.
    (void)madvise(reinterpret_cast<void*>(base), kPoolBuffers * kPoolBufferSize, MADV_HUGEPAGE);
    hole = base + kPoolBuffers * kPoolBufferSize;
    for (int& fd : eventfds) fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    // Page aligned: a name read (copy_string_from_client) goes in 4 KiB chunks from the buffer's start.
    arg = static_cast<uint8_t*>(std::aligned_alloc(4096, kArgBufferSize));
    page_shifts->set(buffers[2], 2 * kPoolBufferSize, kHugeShift);
    std::memset(arg, 0, kArgBufferSize);  // calls write only the first 4 KiB (arg() clears it): the rest stays 0
  }
  // `align` aligned (a power of two), never freed.
  static uint64_t reserve(uint64_t size, int prot, uint64_t align) {
    void* p = mmap(nullptr, size + align, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) abort();
    return (reinterpret_cast<uint64_t>(p) + align - 1) & ~(align - 1);
  }
  std::array<uint64_t, kPoolBuffers> buffers;
  uint64_t hole;
  std::array<int, kEventfds> eventfds;
  uint8_t* arg;
  std::shared_ptr<mm::FixedPageShiftSource> page_shifts = std::make_shared<mm::FixedPageShiftSource>();
};

// The fuzzer's own checks are not coverage feedback: their loops run as often as slots are filled, and counted
// they would make libFuzzer keep inputs for how much they hold rather than for what they reach in the model. They
// use plain loops, as a std algorithm instantiated here would be instrumented all the same.
#define NV2PT_NOT_FEEDBACK __attribute__((no_sanitize("coverage")))

Pool& pool() {
  static Pool p;
  return p;
}

// NV2PT_FUZZ_TRACE=1: each call and container result on stderr, to read a reproducer.
bool trace() {
  static const bool on = std::getenv("NV2PT_FUZZ_TRACE") != nullptr;
  return on;
}

// NV2PT_FUZZ_PROFILE=1: at exit, per op the steps taken and the time of the calls and of the checks after them,
// and the time of each input's close-and-balance check: where an input's time goes. The clock is the monotonic
// one, read in the vDSO: the thread's CPU clock is a system call, and two per step made a run 60 % longer.
class Profile {
 public:
  static Profile* get() {
    static Profile* p = std::getenv("NV2PT_FUZZ_PROFILE") ? new Profile : nullptr;  // printed by its atexit hook
    return p;
  }
  static uint64_t now_ns() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
  }
  void step(uint8_t op, uint64_t call_ns, uint64_t check_ns) {
    ops_[op].steps++;
    ops_[op].call_ns += call_ns;
    ops_[op].check_ns += check_ns;
  }
  void input(uint64_t end_ns) {
    inputs_++;
    end_ns_ += end_ns;
  }

 private:
  Profile() { std::atexit([] { get()->print(); }); }
  void print() const {
    uint64_t steps = 0, call = 0, check = 0;
    std::fprintf(stderr, "%4s %10s %12s %12s\n", "op", "steps", "call us/step", "check us/step");
    for (size_t op = 0; op < kOpCount; ++op) {
      const Op& o = ops_[op];
      steps += o.steps, call += o.call_ns, check += o.check_ns;
      if (o.steps) std::fprintf(stderr, "%4zu %10llu %12.2f %12.2f\n", op, (unsigned long long)o.steps,
                                o.call_ns / 1e3 / o.steps, o.check_ns / 1e3 / o.steps);
    }
    std::fprintf(stderr, "%llu inputs, %.1f steps each; seconds: calls %.2f, checks %.2f, closing and balance %.2f\n",
                 (unsigned long long)inputs_, inputs_ ? double(steps) / inputs_ : 0.0, call / 1e9, check / 1e9,
                 end_ns_ / 1e9);
  }
  struct Op {
    uint64_t steps = 0, call_ns = 0, check_ns = 0;
  };
  std::array<Op, kOpCount> ops_{};
  uint64_t inputs_ = 0, end_ns_ = 0;
};

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "nv2pt fuzz: %s\n", what.c_str());
  std::fflush(stderr);
  abort();
}

// The interposer always gives its host a runtime directory (group ownership across processes: an flock per
// group), so the fuzzer's host has one too: a directory of its own, removed at exit.
struct RuntimeDir {
  RuntimeDir() {
    char name[] = "/tmp/nv2pt-fuzz-XXXXXX";
    if (!mkdtemp(name)) die("mkdtemp failed");
    path = name;
  }
  ~RuntimeDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path, ignored);
  }
  std::string path;
};

std::unique_ptr<vfio::Host> make_host() {
  static RuntimeDir dir;  // made before the first host, so destroyed after the last
  vfio::HostOptions options;
  options.runtime_dir = dir.path;
  options.hardware.hmi_policy = platform::HmiPolicy::kLog;
  auto h = vfio::Host::create(platform::Machine::load_default(), options);
  if (!h) die("Host::create failed");
  return std::move(*h);
}

// One host for every input: creating one (six GPU-RAM memfds and their fault-service threads, the device tree)
// costs more than most inputs. Each input closes everything it opened, so only hardware state (link training,
// GPU-RAM contents, the HMI log) carries over. NV2PT_FUZZ_FRESH_HOST=1 makes a host per input instead, for exact
// reproduction of a crash that depends on such state.
vfio::Host& shared_host() {
  static std::unique_ptr<vfio::Host> host = make_host();
  return *host;
}

// The fuzzer's own groups (ExtraGroup), shared like the host.
struct ExtraGroups {
  // 32-bit windows of 128 MiB and 256 MiB: v1's ENABLE charges the window, and the memlock limit is 256 MiB.
  vfio::testing::LegacyGroup legacy4k{kExtraGroupIdBase + kLegacyGroup4K, 12, 128ull << 20};
  vfio::testing::LegacyGroup legacy64k{kExtraGroupIdBase + kLegacyGroup64K, 16, 256ull << 20};
  vfio::testing::PhbGroup phb{kExtraGroupIdBase + kPhbGroup};
  vfio::Group& operator[](size_t i) { return i == 0 ? legacy4k.group : i == 1 ? legacy64k.group : phb.group; }
};

ExtraGroups& extra_groups() {
  static ExtraGroups groups;
  return groups;
}

// The fds of the client's file table: slot i of each kind has a fixed number (open while the slot is filled);
// stdin, stdout and stderr are open but no VFIO object. Every other number is closed.
constexpr int kContainerFd0 = 100, kGroupFd0 = 200, kDeviceFd0 = 300;

// The client's memlock limit: 256 MiB without CAP_IPC_LOCK.
mm::MemlockPolicy fixed_memlock() { return mm::MemlockPolicy::fixed(kMemlockBytes, /*cap_ipc_lock=*/false); }
// The process's own limits (getrlimit, capget), bounded by that: a higher limit, or CAP_IPC_LOCK's unbounded
// charge, would let a registration run past the hole.
mm::MemlockPolicy own_memlock() {
  return mm::MemlockPolicy::of([] {
    const mm::MemlockLimits own = mm::MemlockPolicy::current_process().read();
    return mm::MemlockLimits{std::min(own.limit_bytes, kMemlockBytes), false};
  });
}

// Backing page sizes: 2 MiB pages over pool buffers 2 and 3 (FixedPageShiftSource), which real memory never has
// here, and elsewhere what the process's own VMAs say (/proc/self/maps, smaps for hugetlb VMAs). Buffer 0, the
// seeds' guest RAM, is plain anonymous memory, whose answer (64 KiB pages) the fuzzer knows without reading
// /proc/self/maps at every registration (a tenth of the fuzzer's time when it did).
class PoolPageShifts final : public mm::PageShiftSource {
 public:
  std::vector<mm::ShiftRun> page_shifts(uint64_t ua, uint64_t len) const override {
    const uint64_t end = ua + len;
    const Pool& p = pool();
    const uint64_t huge_lo = p.buffers[2], huge_hi = p.buffers[3] + kPoolBufferSize;  // buffers 2 and 3
    const bool in_buffer0 = ua >= p.buffers[0] && end <= p.buffers[0] + kPoolBufferSize;
    const bool in_huge = ua >= huge_lo && end <= huge_hi;
    if (in_buffer0 || in_huge) return p.page_shifts->page_shifts(ua, len);
    std::vector<mm::ShiftRun> runs;
    for (const mm::ShiftRun& r : process_.page_shifts(ua, len)) {
      // Outside the presented buffers only (runs must not overlap).
      if (r.start < huge_lo) runs.push_back({r.start, std::min(r.end, huge_lo), r.shift});
      if (r.end > huge_hi) runs.push_back({std::max(r.start, huge_hi), r.end, r.shift});
    }
    for (const mm::ShiftRun& r : p.page_shifts->page_shifts(ua, len)) runs.push_back(r);
    std::sort(runs.begin(), runs.end(), [](const mm::ShiftRun& a, const mm::ShiftRun& b) { return a.start < b.start; });
    return runs;
  }

 private:
  mm::ProcessPageShiftSource process_;
};

class Session final : public vfio::FdResolver {
 public:
  Session() {
    if (std::getenv("NV2PT_FUZZ_FRESH_HOST")) {
      owned_host_ = make_host();
      host_ = owned_host_.get();
    } else {
      host_ = &shared_host();
    }
    mm::AddressSpaceOptions as;
    as.id = 1;
    as.memlock = fixed_memlock();
    as.pinner.ram.assign(std::begin(kRam), std::end(kRam));
    as.pinner.page_shifts = std::make_shared<PoolPageShifts>();
    as_ = std::make_unique<mm::AddressSpace>(as);
    vm_ = std::make_unique<kvm::Vm>(*as_, 1);
    group_ids_ = host_->group_ids();
    for (int id : group_ids_) all_groups_.push_back(host_->group(id));
  }

  // vfio::FdResolver over the slots: what the interposer's fd table answers (EBADF closed, EINVAL another kind).
  Result<std::shared_ptr<vfio::Container>> container(int fd) const override {
    if (auto i = filled_slot(fd, kContainerFd0, containers_)) return containers_[*i];
    return fail(is_open(fd) ? kEINVAL : kEBADF);
  }
  Result<vfio::Group*> group(int fd) const override {
    if (auto i = filled_slot(fd, kGroupFd0, groups_)) return groups_[*i];
    return fail(is_open(fd) ? kEINVAL : kEBADF);
  }
  Result<int> install_device(vfio::Group& group, vfio::PciDevice& device) override {
    auto s = free_slot(devices_);
    if (!s) return fail(Errno{EMFILE});
    devices_[*s] = DeviceSlot{&group, &device};
    return kDeviceFd0 + static_cast<int>(*s);
  }

  void run(InputReader& in) {
    Profile* profile = Profile::get();
    for (int steps = 0; !in.done() && steps < 256; ++steps) {
      idle_ = false;
      const uint64_t start = profile ? Profile::now_ns() : 0;
      uint8_t op;
      {
        std::optional<ScopedFailNth> arm;  // kFailNth: armed for this call only, not for the check after it
        if (fail_nth_) arm.emplace(std::exchange(fail_nth_, 0));
        op = step(in);
      }
      const uint64_t called = profile ? Profile::now_ns() : 0;
      if (!idle_) check(steps);  // a call that reached nothing in the model changed nothing
      if (profile) profile->step(op, called - start, Profile::now_ns() - called);
    }
    const uint64_t start = profile ? Profile::now_ns() : 0;
    close_all(/*vm_drops_groups=*/in.size() % 2);
    check_balanced();
    if (profile) profile->input(Profile::now_ns() - start);
  }

 private:
  struct DeviceSlot {
    vfio::Group* group;
    vfio::PciDevice* device;
  };
  struct MappingSlot {
    vfio::PciDevice* device;
    void* addr;
    size_t length;
  };

  // The slot behind `fd` among the slots numbered from `base`, if that slot is filled.
  template <class T>
  static std::optional<size_t> filled_slot(int fd, int base, const std::array<T, kSlots>& slots) {
    if (fd < base || fd >= base + static_cast<int>(kSlots) || !slots[fd - base]) return std::nullopt;
    return static_cast<size_t>(fd - base);
  }
  bool is_open(int fd) const {
    return (fd >= 0 && fd <= 2) || filled_slot(fd, kContainerFd0, containers_) || filled_slot(fd, kGroupFd0, groups_) ||
           filled_slot(fd, kDeviceFd0, devices_);
  }
  static int32_t fd_of(int base, uint8_t slot) { return base + slot % kSlots; }
  // An fd operand (see FdKind).
  int32_t fd(InputReader& in) {
    const uint8_t v = in.u8();
    switch (v % kFdKindCount) {
      case kFdContainer: return fd_of(kContainerFd0, v / kFdKindCount);
      case kFdGroup: return fd_of(kGroupFd0, v / kFdKindCount);
      case kFdDevice: return fd_of(kDeviceFd0, v / kFdKindCount);
      default: return static_cast<int32_t>(in.u32());
    }
  }

  template <class T>
  static std::optional<size_t> free_slot(const std::array<T, kSlots>& slots) {
    for (size_t i = 0; i < kSlots; ++i)
      if (!slots[i]) return i;
    return std::nullopt;
  }

  // A vaddr operand (see AddressMode).
  uint64_t address(InputReader& in) {
    const uint8_t mode = in.u8() % kAddressModeCount;
    const uint64_t v = in.u64();
    switch (mode) {
      case kPoolBuffer:
        return pool().buffers[v % kPoolBuffers] + (((v >> 8) % (kPoolBufferSize >> kHostPageShift)) << kHostPageShift);
      case kMapping: {
        const auto& m = mappings_[v % kSlots];
        if (!m) return pool().buffers[0];
        return reinterpret_cast<uint64_t>(m->addr) + ((v >> 8) % std::max<uint64_t>(m->length, 1) & ~0xfffull);
      }
      case kHole: return pool().hole + (((v >> 8) % (kHoleSize >> kHostPageShift)) << kHostPageShift);
      case kKernelHalf: return v | (1ull << 63);
      default: return v;
    }
  }
  // An address for REGISTER, which pins: a raw value becomes a kernel-half one.
  uint64_t pinnable_address(InputReader& in) {
    const uint64_t a = address(in);
    return a < (1ull << 47) && !owned(a) ? a | (1ull << 63) : a;
  }
  bool owned(uint64_t a) const {
    for (uint64_t b : pool().buffers)
      if (a >= b && a < b + kPoolBufferSize) return true;
    if (a >= pool().hole && a < pool().hole + kHoleSize) return true;
    for (const auto& m : mappings_) {
      const uint64_t base = m ? reinterpret_cast<uint64_t>(m->addr) : 0;
      if (m && a >= base && a < base + m->length) return true;
    }
    return false;
  }

  uint32_t argsz(InputReader& in, size_t natural) { return argsz(in.u8(), in, natural); }
  // The same with the mode read already (random and larger sizes read their operand from `in`).
  static uint32_t argsz(uint8_t mode, InputReader& in, size_t natural) {
    switch (mode % kArgszModeCount) {
      case kArgszExact: return static_cast<uint32_t>(natural);
      case kArgszShort: return static_cast<uint32_t>(natural - 1);
      case kArgszRandom: return in.u16();
      default: return static_cast<uint32_t>(natural + in.u8());
    }
  }

  // The argument buffer, zeroed for the next call.
  uint8_t* arg() {
    addressable(4096);
    std::memset(pool().arg, 0, 4096);
    return pool().arg;
  }
  // What the client hands over: max(argsz, minsz) bytes of the buffer; the rest becomes unaddressable.
  static void hand_over(uint32_t argsz, size_t minsz) { addressable(std::max<size_t>(argsz, minsz)); }
  // Makes exactly the first `len` bytes of the buffer addressable, changing only the shadow between the old and the
  // new bound (a whole-buffer poison per call was a tenth of a short input's time).
  static void addressable(size_t len) {
    static size_t bound = kArgBufferSize;  // pool().arg is addressable below it, poisoned from it on
    if (len < bound) ASAN_POISON_MEMORY_REGION(pool().arg + len, bound - len);
    if (len > bound) ASAN_UNPOISON_MEMORY_REGION(pool().arg + bound, len - bound);
    bound = len;
  }

  // Returns the op it took.
  uint8_t step(InputReader& in) {
    const uint8_t op = in.u8() % kOpCount;
    if (trace()) std::fprintf(stderr, "op %u\n", op);
    switch (op) {
      case kOpenContainer:
        if (auto s = free_slot(containers_)) containers_[*s] = host_->open_container();
        else idle_ = true;
        break;
      case kCloseContainer: {
        auto& c = containers_[in.u8() % kSlots];
        idle_ = !c;
        c.reset();
        break;
      }
      case kOpenGroup: {
        const uint8_t which = in.u8();
        const int id = which >= 0x80 ? which - 0x80 : group_ids_[which % group_ids_.size()];
        auto s = free_slot(groups_);
        if (!s) {
          idle_ = true;
          break;
        }
        if (auto g = host_->open_group(id)) groups_[*s] = *g;
        break;
      }
      case kCloseGroup: {
        vfio::Group*& g = groups_[in.u8() % kSlots];
        idle_ = !g;
        release(g);
        break;
      }
      case kSetContainer: {
        vfio::Group* g = groups_[in.u8() % kSlots];
        const int32_t container_fd = fd_of(kContainerFd0, in.u8());  // an empty slot's fd is closed: EBADF
        std::memcpy(arg(), &container_fd, sizeof(container_fd));
        hand_over(sizeof(container_fd), sizeof(container_fd));
        group_ioctl(g, VFIO_GROUP_SET_CONTAINER, reinterpret_cast<unsigned long>(pool().arg));
        break;
      }
      case kUnsetContainer: group_ioctl(groups_[in.u8() % kSlots], VFIO_GROUP_UNSET_CONTAINER, 0); break;
      case kSetIommu: {
        const auto& c = containers_[in.u8() % kSlots];
        const uint8_t t = in.u8();
        const unsigned long type = t == 2 || t == 7 ? t : (t & 1 ? VFIO_SPAPR_TCE_v2_IOMMU : t);
        idle_ = !c;
        if (c) (void)c->ioctl(*as_, VFIO_SET_IOMMU, type);
        break;
      }
      case kContainerIoctl: container_ioctl(in); break;
      case kGetDeviceFd: {
        vfio::Group* g = groups_[in.u8() % kSlots];
        const uint8_t member = in.u8();
        const std::string name = member >= 0x80 || !g || g->devices().empty()
                                     ? "0004:04:00." + std::to_string(member)
                                     : g->devices()[member % g->devices().size()]->name();
        group_ioctl(g, VFIO_GROUP_GET_DEVICE_FD, name_in_buffer(name));
        break;
      }
      case kCloseDevice: {
        auto& d = devices_[in.u8() % kSlots];
        idle_ = !d;
        if (d) d->group->device_released(*d->device);
        d.reset();
        break;
      }
      case kDeviceIoctl: device_ioctl(in); break;
      case kDeviceAccess: device_access(in); break;
      case kDeviceMmap: device_mmap(in); break;
      case kMunmap: {
        auto& m = mappings_[in.u8() % kSlots];
        idle_ = !m;
        unmap(m);
        break;
      }
      case kKvmMemorySlot: {
        const uint32_t slot = in.u8() % kSlots;
        const uint64_t ua = address(in);
        const uint64_t gpa = in.u64();
        (void)vm_->set_memory_region(slot, gpa, in.u64(), ua);
        break;
      }
      case kKvmCreateTceTable: {
        kvm::CreateSpaprTce64 args{};
        args.liobn = liobn(in);
        args.page_shift = in.u8();
        args.flags = in.u32();
        args.offset = in.u64();
        args.size = in.u64();
        (void)vm_->create_tce_table(args);
        break;
      }
      case kKvmCreateTceTableEdge: {
        kvm::CreateSpaprTce64 args{};
        args.liobn = liobn(in);
        const uint8_t shift = in.u8();
        args.page_shift = shift >= 0xf0 ? shift : 12 + shift % 23;
        const uint8_t form = in.u8() % kTceEdgeCount;
        const uint64_t a = in.u64();
        const uint64_t b = in.u64();
        const uint64_t limit = args.page_shift < 64 ? ~0ull >> args.page_shift : 0;
        switch (form) {
          case kEdgePowerOfTwoSize:
            args.size = 1ull << (a % 64);
            args.offset = b % (1ull << 20);
            break;
          case kEdgeWrappingSize:
            args.size = (1ull << 61) * (1 + a % 7) + b % (1ull << 16);
            args.offset = 0;
            break;
          case kEdgeEndAtLimit:
            args.size = 1 + a % (1ull << 32);
            args.offset = limit - args.size + 1 - b % 4;  // unsigned: wraps like a client's arithmetic would
            break;
          case kEdgeSizePastLimit:
            args.size = limit + 1 + a % (1ull << 16);
            args.offset = b % (1ull << 16);
            break;
          default:
            args.offset = limit - a % 256;
            args.size = limit - b % 256;
            break;
        }
        auto r = vm_->create_tce_table(args);
        if (trace())
          std::fprintf(stderr, "  create tce 64 shift %u offset %#llx size %#llx -> %s\n", args.page_shift,
                       (unsigned long long)args.offset, (unsigned long long)args.size,
                       r ? "ok" : std::string(errno_name(r.error())).c_str());
        break;
      }
      case kKvmReleaseTceTable: vm_->release_tce_table(liobn(in)); break;
      case kKvmGroup: {
        vfio::Group* g = groups_[in.u8() % kSlots];
        const bool del = in.u8() & 1;
        if (!g) {
          idle_ = true;
          break;
        }
        if (del) (void)vm_->vfio_group_del(*g);
        else if (vm_->vfio_group_add(*g)) kvm_groups_.push_back(g);
        break;
      }
      case kKvmSetSpaprTce: {
        vfio::Group* g = groups_[in.u8() % kSlots];
        const uint64_t l = liobn(in);
        idle_ = !g;
        if (g) (void)vm_->vfio_set_spapr_tce(*g, l);
        break;
      }
      case kHcall: hcall(in); break;
      case kGroupIoctl: group_call(in); break;
      case kHotResetIoctl: hot_reset_call(in); break;
      case kOpenExtraGroup: {
        vfio::Group& g = extra_groups()[in.u8() % kExtraGroupCount];
        auto s = free_slot(groups_);
        idle_ = !s;
        if (s && g.open()) groups_[*s] = &g;
        break;
      }
      case kFailNth:
        fail_nth_ = 1 + in.u8() % 32;
        idle_ = true;
        break;
      case kDeviceDma: device_dma(in); break;
      case kSysfsFacts: sysfs_facts(in); break;
      case kPinPath:
        as_->pinner().set_populate_fallback(in.u8() & 1);
        idle_ = true;
        break;
      case kMemlockSource:
        as_->locked_memory().set_policy(in.u8() & 1 ? own_memlock() : fixed_memlock());
        idle_ = true;  // nothing changed in the model
        break;
    }
    return op;
  }

  // A device's DMA. Where a TCE lets it into pinned RAM, the bytes must land at (or come from) the client address
  // the TCE was made for: the user-address cache's, in v2. Nothing in the model changes, only client memory.
  void device_dma(InputReader& in) {
    vfio::Group* g = groups_[in.u8() % kSlots];
    const uint8_t member = in.u8();
    const uint8_t window = in.u8();
    const uint64_t v = in.u64();
    const bool write = in.u8() & 1;
    const size_t len = 1 + in.u8() % 64;
    std::array<std::byte, 64> bytes{};
    if (write) in.bytes(bytes.data(), len);
    idle_ = true;
    if (!g || !g->table_group() || g->table_group()->members().empty()) return;
    const auto& members = g->table_group()->members();
    const iommu::Pe& pe = *members[member % members.size()];
    const iommu::TceTable* in_window = window < iommu::kMaxWindows ? pe.window(window) : nullptr;
    const uint64_t bus = in_window ? in_window->bus_start() + v % (in_window->bus_end() - in_window->bus_start()) : v;
    auto hpa = pe.translate(bus, write);
    if (trace())
      std::fprintf(stderr, "  dma %s bus %#llx -> %s\n", write ? "write" : "read", (unsigned long long)bus,
                   hpa ? "ok" : std::string(errno_name(hpa.error())).c_str());
    if (!hpa) {
      g->eeh().freeze();  // the PHB stops the PE on a refused DMA; VFIO_EEH_PE_OP recovers it
      return;
    }
    const iommu::TceTable* t = pe.window_at(bus);  // the window the PHB used
    if (!t) die("DMA translated where no window holds the bus address");
    const uint64_t page_offset = bus & (t->page_size() - 1);
    const auto ua = as_->pinner().hpa_to_ua(*hpa);
    if (!ua) return;  // not RAM: device memory (GPU RAM), which the checker's TCE rules cover
    if (as_->pinner().pin_count(*ua) == 0) die("a TCE leads to RAM that is not pinned");
    if (const uint64_t cached = t->cached_ua((bus - t->bus_start()) >> t->page_shift())) {
      if (cached + page_offset != *ua)
        die("DMA at bus " + std::to_string(bus) + " reached a page other than the one its TCE was made for");
      // v2: the TCE holds the page its registration pinned for that address.
      const mm::RegionRef region = as_->registry().lookup(*ua, 1);
      if (!region || region->page_hpa((*ua - region->ua()) >> kHostPageShift) != (*hpa & ~(kHostPageSize - 1)))
        die("DMA at bus " + std::to_string(bus) + " reached a page other than the one registered at its address");
    }
    const size_t n = std::min<uint64_t>(len, t->page_size() - page_offset);  // within the IOMMU page
    auto data = std::span<std::byte>(bytes.data(), n);
    auto r = write ? as_->pinner().dma_write(*hpa, data) : as_->pinner().dma_read(*hpa, data);
    if (!r) die("DMA through a valid TCE into pinned RAM failed: " + std::string(errno_name(r.error())));
    if (std::memcmp(reinterpret_cast<const void*>(*ua), bytes.data(), n) != 0)
      die("DMA bytes differ from the client's memory at the TCE's address");
  }

  // The interposer's sysfs facts agree with each other and with the groups: an address in an IOMMU group is a
  // member of that group and has a device-tree path; an address outside the machine has neither.
  void sysfs_facts(InputReader& in) {
    idle_ = true;  // reads only
    const uint8_t form = in.u8();
    platform::PciAddress a;
    if (form % 2 == 0) {
      const auto functions = host_->machine().pci_functions();
      a = functions[in.u8() % functions.size()].address;
    } else {
      a.domain = in.u16();
      a.bus = in.u8();
      const uint8_t devfn = in.u8();
      a.device = devfn >> 3;
      a.function = devfn & 7;
    }
    const std::string name = a.to_string();
    const std::optional<int> id = host_->iommu_group_of(a);
    const std::string path = host_->devspec(a);
    (void)host_->loc_code(a);
    const bool known = host_->machine().find_function(a) != nullptr;
    if (known == path.empty()) die("devspec of " + name + " disagrees with the machine's functions");
    if (!id) return;
    const vfio::Group* g = host_->group(*id);
    if (!g) die(name + " names IOMMU group " + std::to_string(*id) + ", which the host lacks");
    const auto is_it = [&](const vfio::PciDevice* d) { return d->name() == name; };
    if (std::none_of(g->devices().begin(), g->devices().end(), is_it))
      die(name + " is not a member of its IOMMU group " + std::to_string(*id));
  }

  // The group fd's ioctl, as the interposer dispatches it.
  void group_ioctl(vfio::Group* g, unsigned long cmd, unsigned long value) {
    idle_ = !g;
    if (!g) return;
    auto r = g->ioctl(*as_, cmd, value, *this);
    if (trace())
      std::fprintf(stderr, "  group ioctl %#lx -> %s\n", cmd,
                   r ? std::to_string(*r).c_str() : std::string(errno_name(r.error())).c_str());
  }

  // `name` and its NUL at the start of the argument buffer; the client hands over the 4 KiB chunks the read
  // (strndup_user's, in copy_string_from_client's chunks) may touch before it meets the NUL.
  unsigned long name_in_buffer(std::string_view name) {
    uint8_t* buf = arg();
    std::memcpy(buf, name.data(), name.size());
    hand_over(0, (name.size() + 1 + 4095) / 4096 * 4096);
    return reinterpret_cast<unsigned long>(buf);
  }

  void group_call(InputReader& in) {
    vfio::Group* g = groups_[in.u8() % kSlots];
    const uint8_t call = in.u8() % kGroupCallCount;
    const uint8_t place = in.u8() % kArgPlaceCount;
    uint8_t* buf = arg();
    unsigned long cmd = 0;
    unsigned long value = reinterpret_cast<unsigned long>(buf);
    bool filled = false;  // the buffer past its first 4 KiB, which stays zero otherwise, was written
    switch (call) {
      case kGroupGetStatus: {
        cmd = VFIO_GROUP_GET_STATUS;
        vfio_group_status s{};
        s.argsz = argsz(in, sizeof(s));
        s.flags = in.u32();
        std::memcpy(buf, &s, sizeof(s));
        hand_over(s.argsz, sizeof(s));  // minsz is the whole structure
        break;
      }
      case kGroupSetContainer: {
        cmd = VFIO_GROUP_SET_CONTAINER;
        const int32_t f = fd(in);
        std::memcpy(buf, &f, sizeof(f));
        hand_over(sizeof(f), sizeof(f));
        break;
      }
      case kGroupUnsetContainer: cmd = VFIO_GROUP_UNSET_CONTAINER; break;
      case kGroupGetDeviceFd: {
        cmd = VFIO_GROUP_GET_DEVICE_FD;
        const uint8_t form = in.u8() % kNameFormCount;
        const uint8_t n = in.u8();
        std::string name;
        switch (form) {
          case kNameMember:
            name = g && !g->devices().empty() ? g->devices()[n % g->devices().size()]->name() : "";
            break;
          case kNameBadMember: name = "0004:04:00." + std::to_string(n); break;
          case kNameBytes:
            name.resize(n % 65);
            name.resize(in.bytes(name.data(), name.size()));
            if (auto nul = name.find('\0'); nul != std::string::npos) name.resize(nul);
            break;
          case kNameTooLong: {
            // PAGE_SIZE (64 KiB) bytes and no NUL: strndup_user gives EINVAL; the read stops at the limit.
            hand_over(0, kHostPageSize);
            std::memset(buf, n ? n : 'a', kHostPageSize);
            filled = true;
            break;
          }
          default: {
            // Unterminated at the end of the last pool buffer: the read runs into the hole (EFAULT).
            const size_t len = n % 65;
            uint8_t* end = reinterpret_cast<uint8_t*>(pool().hole);
            std::memset(end - len, 'x', len);
            in.bytes(end - len, len);
            for (size_t i = 0; i < len; ++i) end[-1 - static_cast<ptrdiff_t>(i)] |= 1;  // no NUL
            value = pool().hole - len;
            break;
          }
        }
        if (form <= kNameBytes) value = name_in_buffer(name);
        break;
      }
      default:
        cmd = _IO(VFIO_TYPE, VFIO_BASE + in.u8() % 32);
        in.bytes(buf, 64);
        hand_over(0, 4096);  // a name read (GET_DEVICE_FD) reads the first 4 KiB chunk
        break;
    }
    if (place == kArgHole) value = pool().hole;
    if (place == kArgKernelHalf) value |= 1ull << 63;
    group_ioctl(g, cmd, value);
    if (filled) std::memset(buf, 0, kHostPageSize);  // still addressable
  }

  // VFIO_DEVICE_PCI_HOT_RESET with the header and the group fds in the argument buffer, everything raw (the
  // argsz mode's random or extra operand comes after the fds).
  void hot_reset_call(InputReader& in) {
    const auto& d = devices_[in.u8() % kSlots];
    const uint8_t argsz_mode = in.u8();
    const uint8_t flags_byte = in.u8();
    const uint8_t count_mode = in.u8() % 4;
    const size_t nfds = in.u8() % 8;
    vfio_pci_hot_reset s{};
    s.flags = flags_byte & 0x80 ? in.u32() : flags_byte & 1;
    s.count = count_mode <= 1 ? static_cast<uint32_t>(nfds) : count_mode == 2 ? in.u8() : in.u32();
    uint8_t* buf = arg();
    int32_t fds[8];
    for (size_t i = 0; i < nfds; ++i) fds[i] = fd(in);
    s.argsz = argsz(argsz_mode, in, sizeof(s) + nfds * sizeof(int32_t));
    std::memcpy(buf, &s, sizeof(s));
    std::memcpy(buf + sizeof(s), fds, nfds * sizeof(int32_t));
    hot_reset_ioctl(d, s, nfds);
  }

  // The device's VFIO_DEVICE_PCI_HOT_RESET on the header and `nfds` fds in the argument buffer. The kernel reads
  // `count` fds after the header, whatever argsz says: the client hands over the larger of argsz, the fds it
  // wrote and what count names (a count past the reset's scope is refused before the fds are read).
  void hot_reset_ioctl(const std::optional<DeviceSlot>& d, const vfio_pci_hot_reset& s, size_t nfds) {
    const uint64_t read = sizeof(s) + std::min<uint64_t>(s.count, 1024) * sizeof(int32_t);
    hand_over(s.argsz, std::max<uint64_t>(read, sizeof(s) + nfds * sizeof(int32_t)));
    idle_ = !d;
    if (!d) return;
    auto r = d->device->ioctl(*as_, VFIO_DEVICE_PCI_HOT_RESET, reinterpret_cast<unsigned long>(pool().arg), *this);
    if (trace())
      std::fprintf(stderr, "  hot reset argsz %u flags %#x count %u (%zu fds) -> %s\n", s.argsz, s.flags, s.count,
                   nfds, r ? "ok" : std::string(errno_name(r.error())).c_str());
  }

  // Closes a group fd: the host's groups through the host (its ownership lock), the fuzzer's own directly.
  void release(vfio::Group*& g) {
    if (!g) return;
    if (g->id() >= kExtraGroupIdBase) g->release();
    else host_->release_group(*g);
    g = nullptr;
  }

  uint64_t liobn(InputReader& in) { return kLiobnBase + in.u8() % kSlots; }

  void hcall(InputReader& in) {
    const uint8_t kind = in.u8() % kHcallKindCount;
    const uint64_t l = liobn(in);
    const uint64_t ioba = in.u64();
    const uint64_t tce = in.u64();
    const uint64_t npages = in.u16();
    long rc = 0;
    switch (kind) {
      case kHPutTce: rc = vm_->h_put_tce(l, ioba, tce); break;
      case kHPutTceIndirect: rc = vm_->h_put_tce_indirect(l, ioba, tce, npages); break;
      case kHStuffTce: rc = vm_->h_stuff_tce(l, ioba, tce, npages); break;
      default: rc = vm_->h_get_tce(l, ioba).first; break;
    }
    if (trace()) std::fprintf(stderr, "  hcall %u = %ld\n", kind, rc);
  }

  void container_ioctl(InputReader& in) {
    const auto& c = containers_[in.u8() % kSlots];
    const uint8_t call = in.u8() % kContainerCallCount;
    uint8_t* buf = arg();
    unsigned long cmd = 0;
    unsigned long value = reinterpret_cast<unsigned long>(buf);
    uint32_t given = 0;  // argsz of the call
    size_t minsz = 0;    // what the kernel copies in before looking at argsz
    auto put = [&](auto s, InputReader& r) {
      s.argsz = given = argsz(r, sizeof(s));
      std::memcpy(buf, &s, sizeof(s));
    };
    switch (call) {
      case kApiVersion: cmd = VFIO_GET_API_VERSION; break;
      case kCheckExtension:
        cmd = VFIO_CHECK_EXTENSION;
        value = in.u8();
        break;
      case kGetInfo: {
        cmd = VFIO_IOMMU_SPAPR_TCE_GET_INFO;
        vfio_iommu_spapr_tce_info s{};
        put(s, in);
        minsz = offsetofend(vfio_iommu_spapr_tce_info, dma32_window_size);
        break;
      }
      case kMapDma: {
        cmd = VFIO_IOMMU_MAP_DMA;
        vfio_iommu_type1_dma_map s{};
        s.flags = in.u8() & 7;
        s.vaddr = address(in);
        s.iova = in.u64();
        s.size = in.u64();
        put(s, in);
        minsz = offsetofend(vfio_iommu_type1_dma_map, size);
        break;
      }
      case kUnmapDma: {
        cmd = VFIO_IOMMU_UNMAP_DMA;
        vfio_iommu_type1_dma_unmap s{};
        s.flags = in.u8() & 1;
        s.iova = in.u64();
        s.size = in.u64();
        put(s, in);
        minsz = offsetofend(vfio_iommu_type1_dma_unmap, size);
        break;
      }
      case kRegister:
      case kUnregister: {
        cmd = call == kRegister ? VFIO_IOMMU_SPAPR_REGISTER_MEMORY : VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY;
        vfio_iommu_spapr_register_memory s{};
        s.flags = in.u8() & 1;
        s.vaddr = call == kRegister ? pinnable_address(in) : address(in);
        s.size = in.u64();
        put(s, in);
        minsz = offsetofend(vfio_iommu_spapr_register_memory, size);
        break;
      }
      case kEnable: cmd = VFIO_IOMMU_ENABLE; break;
      case kDisable: cmd = VFIO_IOMMU_DISABLE; break;
      case kEehOp: {
        cmd = VFIO_EEH_PE_OP;
        vfio_eeh_pe_op s{};
        s.flags = in.u8() & 1;
        s.op = in.u8() % 12;
        s.err.type = in.u32();
        s.err.func = in.u32();
        s.err.addr = in.u64();
        s.err.mask = in.u64();
        put(s, in);
        minsz = offsetofend(vfio_eeh_pe_op, op);  // INJECT_ERR copies the rest only after checking argsz
        break;
      }
      case kTceCreate: {
        cmd = VFIO_IOMMU_SPAPR_TCE_CREATE;
        vfio_iommu_spapr_tce_create s{};
        s.flags = in.u8() & 1;
        s.page_shift = in.u8();
        s.window_size = in.u64();
        s.levels = in.u8();
        put(s, in);
        minsz = offsetofend(vfio_iommu_spapr_tce_create, start_addr);
        break;
      }
      case kTceRemove: {
        cmd = VFIO_IOMMU_SPAPR_TCE_REMOVE;
        vfio_iommu_spapr_tce_remove s{};
        s.flags = in.u8() & 1;
        s.start_addr = in.u64();
        put(s, in);
        minsz = offsetofend(vfio_iommu_spapr_tce_remove, start_addr);
        break;
      }
      default:
        cmd = _IO(VFIO_TYPE, VFIO_BASE + in.u8() % 32);
        in.bytes(buf, 64);
        minsz = 64;
        break;
    }
    hand_over(given, minsz);
    idle_ = !c;
    if (!c) return;
    auto r = c->ioctl(*as_, cmd, value);
    if (trace()) {
      uint64_t fields[5] = {};
      std::memcpy(fields, buf, std::min<size_t>(sizeof(fields), std::max<size_t>(given, minsz)));
      std::fprintf(stderr, "  container ioctl %#lx [%#llx %#llx %#llx %#llx %#llx] -> %s\n", cmd,
                   (unsigned long long)fields[0], (unsigned long long)fields[1], (unsigned long long)fields[2],
                   (unsigned long long)fields[3], (unsigned long long)fields[4],
                   r ? "ok" : std::string(errno_name(r.error())).c_str());
    }
  }

  void device_ioctl(InputReader& in) {
    const auto& d = devices_[in.u8() % kSlots];
    const uint8_t call = in.u8() % kDeviceCallCount;
    uint8_t* buf = arg();
    unsigned long cmd = 0;
    uint32_t given = 0;
    size_t minsz = 0;
    auto put = [&](auto s, InputReader& r) {
      s.argsz = given = argsz(r, sizeof(s));
      std::memcpy(buf, &s, sizeof(s));
      minsz = sizeof(s);  // the fixed part of every device struct is its minsz
    };
    switch (call) {
      case kDeviceInfo: {
        cmd = VFIO_DEVICE_GET_INFO;
        put(vfio_device_info{}, in);
        break;
      }
      case kRegionInfo: {
        cmd = VFIO_DEVICE_GET_REGION_INFO;
        vfio_region_info s{};
        s.index = in.u8() % 16;
        put(s, in);
        break;
      }
      case kIrqInfo: {
        cmd = VFIO_DEVICE_GET_IRQ_INFO;
        vfio_irq_info s{};
        s.index = in.u8() % 8;
        put(s, in);
        break;
      }
      case kSetIrqs: {
        cmd = VFIO_DEVICE_SET_IRQS;
        vfio_irq_set s{};
        s.flags = in.u16();
        s.index = in.u8() % 8;
        s.start = in.u32();
        s.count = in.u32();
        put(s, in);
        // The data: the fuzzer's eventfds, or raw bytes (raw fds may name any of our fds: dup'ed, harmless).
        int32_t* fds = reinterpret_cast<int32_t*>(buf + sizeof(s));
        if (in.u8() & 1) {
          for (size_t i = 0; i < 64; ++i) fds[i] = pool().eventfds[(i + s.start) % kEventfds];
        } else {
          in.bytes(fds, 64);
        }
        break;
      }
      case kReset: cmd = VFIO_DEVICE_RESET; break;
      case kHotResetInfo: {
        cmd = VFIO_DEVICE_GET_PCI_HOT_RESET_INFO;
        put(vfio_pci_hot_reset_info{}, in);
        break;
      }
      case kHotReset: {
        vfio_pci_hot_reset s{};
        s.flags = in.u8() & 1;
        s.count = in.u8() % 8;
        s.argsz = argsz(in, sizeof(s));
        const uint8_t mask = in.u8();
        size_t nfds = 0;
        for (uint8_t i = 0; i < kSlots; ++i) {  // an empty slot's fd is closed: EBADF
          if (!(mask & (1u << i))) continue;
          const int32_t group_fd = fd_of(kGroupFd0, i);
          std::memcpy(buf + sizeof(s) + nfds++ * sizeof(int32_t), &group_fd, sizeof(group_fd));
        }
        std::memcpy(buf, &s, sizeof(s));
        hot_reset_ioctl(d, s, nfds);
        return;
      }
      default:
        cmd = _IO(VFIO_TYPE, VFIO_BASE + in.u8() % 32);
        in.bytes(buf, 64);
        minsz = 64;
        break;
    }
    hand_over(given, minsz);
    idle_ = !d;
    if (d) (void)d->device->ioctl(*as_, cmd, reinterpret_cast<unsigned long>(buf), *this);
  }

  void device_access(InputReader& in) {
    const auto& d = devices_[in.u8() % kSlots];
    const bool write = in.u8() & 1;
    const uint64_t index = in.u8() % 12;
    const uint8_t mode = in.u8() % 3;
    const uint64_t raw = in.u64();
    const uint64_t pos = mode == 0 ? raw & 0xffff : mode == 1 ? raw & ((1ull << 40) - 1) : raw >> 40 << 40;
    const size_t count = in.u16() % 4097;
    uint8_t* buf = arg();
    if (write) in.bytes(buf, count);
    idle_ = !d;
    if (!d) return;
    const uint64_t offset = mode == 2 ? pos : index << 40 | pos;
    auto span = std::span<std::byte>(reinterpret_cast<std::byte*>(buf), count);
    if (write) (void)d->device->write(span, offset);
    else (void)d->device->read(span, offset);
  }

  void device_mmap(InputReader& in) {
    const auto& d = devices_[in.u8() % kSlots];
    const uint64_t index = in.u8() % 12;
    const uint8_t length_mode = in.u8() % 3;
    const uint64_t raw_length = in.u64();
    const uint64_t raw_pos = in.u64() & ((1ull << 40) - 1);
    const uint64_t pos = in.u8() & 1 ? raw_pos : raw_pos & ~(kHostPageSize - 1);
    const int prot = in.u8() & 1 ? PROT_READ : PROT_READ | PROT_WRITE;
    const int flags = in.u8() % 8 == 0 ? MAP_PRIVATE : MAP_SHARED;
    auto s = free_slot(mappings_);
    idle_ = !d || !s;
    if (!d || !s) return;
    uint64_t length = 0;
    if (length_mode == 0) {  // the region's size, as QEMU asks
      vfio_region_info info{sizeof(info)};
      info.index = static_cast<uint32_t>(index);
      if (d->device->ioctl(*as_, VFIO_DEVICE_GET_REGION_INFO, reinterpret_cast<unsigned long>(&info)))
        length = info.size;
    } else {
      length = length_mode == 1 ? kHostPageSize : raw_length & ((1ull << 38) - 1);
    }
    if (length == 0) return;
    if (auto p = d->device->mmap(*as_, nullptr, length, prot, flags, index << 40 | pos))
      mappings_[*s] = MappingSlot{d->device, *p, length};
  }

  // The interposer's munmap: the device hears of it, then the mapping goes.
  void unmap(std::optional<MappingSlot>& m) {
    if (!m) return;
    m->device->munmap(m->addr, m->length);
    ::munmap(m->addr, m->length);
    m.reset();
  }

  void close_all(bool vm_drops_groups) {
    // The KVM fds first: a group added to the VM is deleted from it (the group outlives this input in the shared
    // host), or, for half the inputs, the VM's destruction lets it go (kvm_vfio_destroy); then the VM goes with its
    // guest tables.
    if (!vm_drops_groups)
      for (vfio::Group* g : kvm_groups_) (void)vm_->vfio_group_del(*g);
    kvm_groups_.clear();
    vm_.reset();
    for (auto& m : mappings_) unmap(m);
    for (auto& d : devices_) {
      if (d) d->group->device_released(*d->device);
      d.reset();
    }
    for (auto& g : groups_) release(g);
    for (auto& c : containers_) c.reset();
  }

  // `step`: the call just made, or -1 after closing everything.
  NV2PT_NOT_FEEDBACK void check(int step) {
    host_->containers(live_);  // vectors kept across calls: an allocation per check costs (ASan fills it)
    iommus_.clear();
    for (const auto& c : live_)
      if (const vfio::SpaprTceIommu* i = c->iommu()) iommus_.push_back(i);
    uint64_t stt_pages = 0;  // locked memory the guest TCE tables charged
    for (uint64_t i = 0; vm_ && i < kSlots; ++i)
      if (const kvm::GuestTceTable* t = vm_->tce_table(kLiobnBase + i)) stt_pages += t->charged_pages();
    vfio::InvariantReport r = vfio::check_invariants(*as_, iommus_, stt_pages, &checked_);
    if (!r.ok()) {
      const std::string when = step < 0 ? "after closing everything" : "after op " + std::to_string(step);
      die("invariant violated " + when + ":\n" + r.to_string());
    }
    check_views();
    live_.clear();  // no reference outlives the check
  }

  // What the fuzzer holds agrees with what the model reports of it: which groups are open and in the VM, how
  // often each device is open, which mappings each device knows, the containers' groups and registrations.
  NV2PT_NOT_FEEDBACK void check_views() {
    for (const vfio::Group* g : all_groups_) {
      bool held = false;
      for (const vfio::Group* slot : groups_) held |= slot == g;
      if (g->is_open() != held) die(group_name(*g) + (held ? " is held but closed" : " is open but not held"));
      const bool in_vm = vm_ && vm_->has_group(*g);
      if (g->kvm() != (in_vm ? std::optional<uint64_t>(vm_->lpid()) : std::nullopt))
        die(group_name(*g) + " names another VM than the one holding it");
      for (const vfio::PciDevice* d : g->devices()) {
        int fds = 0;
        for (const auto& slot : devices_) fds += slot && slot->device == d;
        if (d->open_count() != fds)
          die(d->name() + " counts " + std::to_string(d->open_count()) + " opens, not " + std::to_string(fds));
        if (d->iommu_group() != static_cast<uint32_t>(g->id()))
          die(d->name() + " names another IOMMU group than its own");
      }
    }
    for (const auto& m : mappings_)
      if (m && !m->device->owns_mapping(m->addr, m->length)) die(m->device->name() + " forgot a mapping of it");
    for (const auto& c : live_) {
      for (const vfio::Group* g : c->groups())
        if (g->container() != c) die(group_name(*g) + " is in a container it does not name");
      const vfio::SpaprTceIommu* iommu = c->iommu();
      if (!iommu) continue;
      for (const mm::RegionRef& region : iommu->registrations()) {
        if (iommu->address_space() != as_.get()) die("a container registered memory of another address space");
        if (region->orphaned() || as_->registry().lookup(region->ua(), region->size()).get() != region.get())
          die("a container's registration the registry does not find");
      }
    }
  }

  static std::string group_name(const vfio::Group& g) { return "group " + std::to_string(g.id()); }

  NV2PT_NOT_FEEDBACK void check_balanced() {
    check(-1);
    if (!host_->containers().empty()) die("a container outlived every fd");
    const mm::AddressSpace& as = *as_;
    // What may stay: device memory a GPU-RAM release kept, and regular memory orphaned by a container that went
    // while another container's TCEs mapped it (RegisteredRegion::orphaned), still pinned and charged.
    std::vector<const mm::RegisteredRegion*> regions;  // looked at outside for_each, which holds the registry
    as.registry().for_each([&](const mm::RegisteredRegion& r) { regions.push_back(&r); });
    uint64_t orphaned_pages = 0;
    for (const mm::RegisteredRegion* r : regions) {
      if (as.registry().lookup(r->ua(), r->size()).get() != r) die("a region its own range does not find");
      if (r->is_device()) {
        if (!as.registry().is_devmem(*r->dev_hpa(), kHostPageShift)) die("device memory the registry does not know");
        continue;
      }
      if (!r->orphaned()) die("a regular registration outlived every fd");
      orphaned_pages += r->entries();
    }
    if (as.registry().size() != regions.size() || as.registry().empty() != regions.empty())
      die("the registry miscounts");
    // Every pinned 64 KiB page holds one frame of the model's RAM (a huge page an aligned run of them).
    if (as.pinner().free_frames() + as.pinner().pinned_pages() != as.pinner().total_frames())
      die("frames lost: " + std::to_string(as.pinner().free_frames()) + " free + " +
          std::to_string(as.pinner().pinned_pages()) + " pinned of " + std::to_string(as.pinner().total_frames()));
    if ((as.pinner().extent_count() == 0) != (as.pinner().pinned_pages() == 0)) die("pin extents without pins");
    if (as.locked_memory().locked_pages() != orphaned_pages)
      die("locked memory left: " + std::to_string(as.locked_memory().locked_pages()) + " pages, " +
          std::to_string(orphaned_pages) + " of them orphaned");
    if (as.pinner().pinned_pages() != orphaned_pages)
      die("pinned pages left: " + std::to_string(as.pinner().pinned_pages()) + ", " + std::to_string(orphaned_pages) +
          " of them orphaned");
    if (as.pinner().unbalanced_unpins() != 0) die("unbalanced unpins");
  }

  std::unique_ptr<vfio::Host> owned_host_;
  vfio::Host* host_;
  std::unique_ptr<mm::AddressSpace> as_;  // after the host: destroyed first, like a process's mm after its fds
  std::unique_ptr<kvm::Vm> vm_;           // after the address space: destroyed before it
  std::vector<vfio::Group*> kvm_groups_;  // groups added to the VM (let go at the end of the input)
  std::vector<int> group_ids_;
  std::vector<const vfio::Group*> all_groups_;  // of group_ids_
  vfio::InvariantCache checked_;  // the checker walks a TCE table again only after it changed
  std::vector<std::shared_ptr<vfio::Container>> live_;  // check()'s, kept for their capacity
  std::vector<const vfio::SpaprTceIommu*> iommus_;
  uint64_t fail_nth_ = 0;  // kFailNth's n for the next call, 0: none
  bool idle_ = false;  // the step just made reached nothing in the model (an empty slot, no free slot)
  std::array<std::shared_ptr<vfio::Container>, kSlots> containers_;
  std::array<vfio::Group*, kSlots> groups_{};
  std::array<std::optional<DeviceSlot>, kSlots> devices_;
  std::array<std::optional<MappingSlot>, kSlots> mappings_;
};

}  // namespace
}  // namespace nv2pt::fuzz

// ASan's defaults for this target (ASAN_OPTIONS overrides them): a quarantine of 32 MiB, not 256. With the large one
// nearly every allocation got fresh pages, and their page faults and shadow fills were a fifth of the time; 32 MiB
// still holds what many inputs free, so a use after free within an input is still reported.
extern "C" const char* __asan_default_options() { return "quarantine_size_mb=32"; }

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  nv2pt::fuzz::pool();
  nv2pt::fuzz::InputReader in(data, size);
  nv2pt::fuzz::Session session;
  session.run(in);
  return 0;
}
