#include "platform/gpu_ram.h"

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "base/thread_annotations.h"
#include "base/checked.h"
#include "base/host_page.h"
#include "platform/sparse_memfd.h"

namespace nv2pt::platform {

namespace {

// The model's page: GPU RAM is populated in 64 KiB steps, the POWER9 host page.
constexpr uint64_t kModelPage = kHostPageSize;

uint64_t machine_page_size() { return static_cast<uint64_t>(sysconf(_SC_PAGESIZE)); }

}  // namespace

struct GpuRam::Impl {
  struct Mapping {
    uint64_t len;
    uint64_t offset;      // window offset of the first byte
    bool kernel = false;  // its real part is unregistered: the kernel's fault path serves it
  };
  // The client addresses of a mapping that lie inside the real RAM (the model pages the rule allows once the
  // links are trained); len 0 if none.
  struct Range {
    uint64_t start = 0;
    uint64_t len = 0;
  };

  Impl(Config c, HmiLog& l, std::function<bool()> trained) : config(c), log(l), links_trained(std::move(trained)) {
    policy.store(c.policy);
  }
  ~Impl();

  Result<void> start();
  void serve();
  void handle_fault(const uffd_msg& msg);
  bool populate(uint64_t start, uint64_t len);
  // The rule: nullopt if the access to the model page at `offset` is allowed, else the HMI cause.
  std::optional<HmiCause> violation(uint64_t offset) const;
  // Records the HMI; under the fatal policy through the log's fatal hook, and then returns true: the caller sends
  // the signal.
  bool record(uint64_t offset, HmiCause cause);

  Range real_part(uintptr_t start, const Mapping& m) const;
  bool register_range(uint64_t start, uint64_t len) const;
  // Hands the real RAM of every mapping to the kernel's fault path if every link is trained.
  void serve_real_ram_by_kernel() NV2PT_REQUIRES(mutex);
  // Registers every mapping whole again. `keep_mapped`: first fill in the rest of every 64 KiB page the client
  // has partly mapped, so that the pages it can touch unchecked are those the service would have left it.
  void rearm(bool keep_mapped) NV2PT_REQUIRES(mutex);
  void complete_mapped_pages(const Range& part, uint64_t offset) const;

  Config config;
  HmiLog& log;
  std::function<bool()> links_trained;
  std::atomic<HmiPolicy> policy;
  SparseMemfd memfd;
  int uffd = -1;
  bool minor_faults = false;  // pages already in the memfd trap too (UFFD_FEATURE_MINOR_SHMEM, 5.14+)
  int stop_fd = -1;
  int pagemap_fd = -1;        // /proc/self/pagemap: which client pages have page-table entries
  std::thread thread;
  std::atomic<uint64_t> faults{0};

  Mutex mutex;
  std::map<uintptr_t, Mapping> mappings NV2PT_GUARDED_BY(mutex);  // by start address
  bool kernel_serves NV2PT_GUARDED_BY(mutex) = false;  // links trained: real parts go to the kernel
};

GpuRam::Impl::~Impl() {
  if (thread.joinable()) {
    const uint64_t one = 1;
    (void)!::write(stop_fd, &one, sizeof one);
    thread.join();
  }
  if (uffd >= 0) close(uffd);
  if (stop_fd >= 0) close(stop_fd);
  if (pagemap_fd >= 0) close(pagemap_fd);
}

Result<void> GpuRam::Impl::start() {
  memfd = NV2PT_TRY(SparseMemfd::create("nv2pt-gpu-ram-" + config.gpu.to_string(), config.window_size));
  // User-mode-only faults need no privilege; kernel accesses to the range (a read() into it) get EFAULT.
  // UFFDIO_API can be issued once per fd: ask a probe fd what the kernel offers, then enable on the real one.
  // The exact fault address (5.18+) makes the HMI's address exact; without it the address is page-aligned.
  uint64_t available = 0;
  {
    const int probe = static_cast<int>(syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY));
    if (probe < 0) return fail(kEIO);
    uffdio_api api{};
    api.api = UFFD_API;
    const int rc = ioctl(probe, UFFDIO_API, &api);
    close(probe);
    if (rc != 0) return fail(kEIO);
    available = api.features;
  }
  if (!(available & UFFD_FEATURE_MISSING_SHMEM) || !(available & UFFD_FEATURE_THREAD_ID)) return fail(kEIO);
  uffd = static_cast<int>(syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY));
  if (uffd < 0) return fail(kEIO);
  uffdio_api api{};
  api.api = UFFD_API;
  // Minor faults let a page that is already in the memfd (written through write(), or populated before a reset
  // untrained the links) be checked again after zap(): without them it would be mapped silently.
  minor_faults = available & UFFD_FEATURE_MINOR_SHMEM;
  api.features = UFFD_FEATURE_THREAD_ID | (available & (UFFD_FEATURE_EXACT_ADDRESS | UFFD_FEATURE_MINOR_SHMEM));
  if (ioctl(uffd, UFFDIO_API, &api) != 0) return fail(kEIO);
  stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (stop_fd < 0) return fail(kEIO);
  pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);  // optional: see complete_mapped_pages
  thread = std::thread([this] { serve(); });
  return {};
}

namespace {

// Whether thread `tid` of this process blocks or ignores SIGBUS (its SigBlk / SigIgn masks in /proc).
bool sigbus_blocked_or_ignored(pid_t tid) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/self/task/%d/status", static_cast<int>(tid));
  FILE* f = std::fopen(path, "re");
  if (!f) return false;
  char line[256];
  bool masked = false;
  const unsigned long long bit = 1ull << (SIGBUS - 1);
  while (std::fgets(line, sizeof line, f)) {
    unsigned long long mask = 0;
    if ((std::sscanf(line, "SigBlk: %llx", &mask) == 1 || std::sscanf(line, "SigIgn: %llx", &mask) == 1) &&
        (mask & bit))
      masked = true;
  }
  std::fclose(f);
  return masked;
}

// A machine check is not something a thread can block (the kernel's force_sig): when the touching thread blocks
// or ignores SIGBUS (QEMU's main loop takes SIGBUS through a signalfd), the process dies of SIGBUS from here.
[[noreturn]] void force_sigbus() {
  signal(SIGBUS, SIG_DFL);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGBUS);
  pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
  raise(SIGBUS);
  _exit(128 + SIGBUS);
}

}  // namespace

void GpuRam::Impl::serve() {
  // Faults come in runs (a driver clearing its memory page after page). After serving one the thread keeps reading
  // for a short while before it sleeps, so the next fault of the run finds it awake: on a VM, waking an idle CPU
  // costs more than serving the fault.
  constexpr auto kPollWindow = std::chrono::microseconds(500);
  pollfd fds[2] = {{uffd, POLLIN, 0}, {stop_fd, POLLIN, 0}};
  for (;;) {
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[1].revents) return;
    if (!(fds[0].revents & POLLIN)) {
      if (fds[0].revents & (POLLERR | POLLHUP | POLLNVAL)) return;
      continue;
    }
    auto deadline = std::chrono::steady_clock::now() + kPollWindow;
    for (;;) {
      uffd_msg msgs[16];
      const ssize_t n = ::read(uffd, msgs, sizeof msgs);  // non-blocking
      const auto now = std::chrono::steady_clock::now();
      if (n > 0) {
        for (size_t i = 0; i < static_cast<size_t>(n) / sizeof(uffd_msg); ++i)
          if (msgs[i].event == UFFD_EVENT_PAGEFAULT) handle_fault(msgs[i]);
        deadline = now + kPollWindow;
      } else if (now >= deadline) {
        break;
      }
    }
  }
}

std::optional<HmiCause> GpuRam::Impl::violation(uint64_t offset) const {
  if (!links_trained || !links_trained()) return HmiCause::kUntrainedLink;
  if (align_down(offset, kModelPage) >= config.real_size) return HmiCause::kBeyondRealRam;
  return std::nullopt;
}

bool GpuRam::Impl::record(uint64_t offset, HmiCause cause) {
  const Hmi hmi{std::chrono::system_clock::now(), config.gpu, config.window_base + offset, cause};
  if (policy.load() != HmiPolicy::kFatal) {
    log.record(hmi);
    return false;
  }
  log.record_fatal(hmi);
  return true;
}

// Installs zero pages over [start, start + len) (machine pages), skipping those already in the memfd, then wakes
// the faulting threads.
bool GpuRam::Impl::populate(uint64_t start, uint64_t len) {
  uffdio_zeropage zp{};
  zp.range.start = start;
  zp.range.len = len;
  zp.mode = UFFDIO_ZEROPAGE_MODE_DONTWAKE;
  if (ioctl(uffd, UFFDIO_ZEROPAGE, &zp) != 0 && errno == EEXIST) {
    // Part of the range is already in the page cache (written through write(), or mapped twice): page by page.
    const uint64_t step = machine_page_size();
    for (uint64_t a = start; a < start + len; a += step) {
      uffdio_zeropage one{};
      one.range.start = a;
      one.range.len = step;
      one.mode = UFFDIO_ZEROPAGE_MODE_DONTWAKE;
      (void)ioctl(uffd, UFFDIO_ZEROPAGE, &one);
    }
  }
  uffdio_range wake{start, len};
  return ioctl(uffd, UFFDIO_WAKE, &wake) == 0;
}

GpuRam::Impl::Range GpuRam::Impl::real_part(uintptr_t start, const Mapping& m) const {
  // The rule allows a model page that starts inside the real RAM: the end rounds up to the model page.
  const uint64_t real_end = std::min(config.window_size, align_up(config.real_size, kModelPage).value_or(~0ull));
  if (m.offset >= real_end) return {};
  return {start, std::min(m.len, real_end - m.offset)};
}

bool GpuRam::Impl::register_range(uint64_t start, uint64_t len) const {
  if (len == 0) return true;
  uffdio_register reg{};
  reg.range.start = start;
  reg.range.len = len;
  reg.mode = UFFDIO_REGISTER_MODE_MISSING | (minor_faults ? UFFDIO_REGISTER_MODE_MINOR : 0);
  return ioctl(uffd, UFFDIO_REGISTER, &reg) == 0;
}

void GpuRam::Impl::serve_real_ram_by_kernel() {
  if (!links_trained || !links_trained()) return;
  for (auto& [start, m] : mappings) {
    const Range part = real_part(start, m);
    if (part.len == 0 || m.kernel) continue;
    // The VMA splits at the end of the real RAM; the kernel wakes any thread still waiting on a fault in the
    // range, and its retry is the kernel's own shmem fault. A failure leaves the range with the service.
    uffdio_range range{part.start, part.len};
    m.kernel = ioctl(uffd, UFFDIO_UNREGISTER, &range) == 0;
  }
  kernel_serves = true;
}

void GpuRam::Impl::rearm(bool keep_mapped) {
  for (auto& [start, m] : mappings) {
    if (!m.kernel) continue;
    m.kernel = false;
    const Range part = real_part(start, m);
    // Still unregistered here, so filling pages in is the kernel's work and cannot wait on the service.
    if (keep_mapped) complete_mapped_pages(part, m.offset);
    // A failure means the client unmapped the range without unmap() (nothing to guard; nothing may be mapped over
    // an address it may reuse) or the process is out of VMAs (the range then stays unchecked: nothing safer).
    (void)register_range(part.start, part.len);
  }
  kernel_serves = false;
}

// The kernel maps what the client touched one machine page at a time; the service maps the whole 64 KiB page at
// the first touch. So that a link drop leaves the client exactly the pages the service would have left it, every
// model page with a page-table entry in `part` gets its missing machine pages filled in (a machine page the memfd
// already holds but the client never mapped stays unmapped: the service would not have mapped it either).
void GpuRam::Impl::complete_mapped_pages(const Range& part, uint64_t offset) const {
  const uint64_t page = machine_page_size();
  if (page >= kModelPage) return;  // one machine page per model page: nothing is ever partly mapped
  const uint64_t per_model = kModelPage / page;
  std::vector<uint64_t> entries(per_model);
  std::vector<unsigned char> resident(per_model);
  uint64_t last_done = ~0ull;
  (void)memfd.for_each_data_extent(offset, offset + part.len, [&](uint64_t from, uint64_t to) {
    for (uint64_t model = align_down(from, kModelPage); model < to; model += kModelPage) {
      if (model == last_done) continue;
      last_done = model;
      // The model page in client addresses, clipped to the part.
      const uint64_t lo = part.start + (std::max(model, offset) - offset);
      const uint64_t hi = part.start + (std::min(model + kModelPage, offset + part.len) - offset);
      const uint64_t n = (hi - lo) / page;
      bool any_mapped = pagemap_fd < 0;  // without pagemap: data in the memfd stands for "mapped"
      if (pagemap_fd >= 0) {
        const ssize_t want = static_cast<ssize_t>(n * sizeof(uint64_t));
        if (pread(pagemap_fd, entries.data(), want, static_cast<off_t>(lo / page * sizeof(uint64_t))) != want)
          continue;
        for (uint64_t i = 0; i < n; ++i) any_mapped |= (entries[i] >> 63) & 1;  // bit 63: present
      }
      if (!any_mapped || mincore(reinterpret_cast<void*>(lo), hi - lo, resident.data()) != 0) continue;
      for (uint64_t i = 0; i < n; ++i) {
        const bool mapped = pagemap_fd >= 0 && ((entries[i] >> 63) & 1);
        if (!mapped && !(resident[i] & 1))
          (void)madvise(reinterpret_cast<void*>(lo + i * page), page, MADV_POPULATE_WRITE);
      }
    }
  });
}

void GpuRam::Impl::handle_fault(const uffd_msg& msg) {
  faults.fetch_add(1, std::memory_order_relaxed);
  const uint64_t address = msg.arg.pagefault.address;
  uint64_t map_start = 0;
  Mapping mapping{};
  {
    MutexLock lock(mutex);
    auto it = mappings.upper_bound(static_cast<uintptr_t>(address));
    if (it == mappings.begin()) return;
    --it;
    if (address >= it->first + it->second.len) return;
    map_start = it->first;
    mapping = it->second;
    // Read before the real RAM left the service: unregistering woke the toucher, the kernel served its retry.
    const Range part = real_part(map_start, mapping);
    if (mapping.kernel && address - part.start < part.len) return;
  }
  const uint64_t offset = mapping.offset + (address - map_start);
  // The whole 64 KiB model page, clipped to the mapping.
  const uint64_t page_offset = align_down(offset, kModelPage);
  const uint64_t lo = std::max(map_start, address - (offset - page_offset));
  const uint64_t hi = std::min(map_start + mapping.len, address - (offset - page_offset) + kModelPage);

  if (const auto cause = violation(offset)) {
    if (record(offset, *cause)) {
      // A machine check on the touching thread. The wake lets it return to user mode, where the signal lands
      // before the access is retried.
      const auto tid = static_cast<pid_t>(msg.arg.pagefault.feat.ptid);
      if (sigbus_blocked_or_ignored(tid)) force_sigbus();
      syscall(SYS_tgkill, getpid(), tid, SIGBUS);
      uffdio_range wake{align_down(address, machine_page_size()), machine_page_size()};
      ioctl(uffd, UFFDIO_WAKE, &wake);
      return;
    }
  } else {
    // Allowed, so every link is trained, yet the real RAM is still with the service (no links_changed() since
    // training, or a discard()): hand it to the kernel now. The toucher's retry is then the kernel's own fault,
    // as is every later touch.
    MutexLock lock(mutex);
    serve_real_ram_by_kernel();
    if (auto it = mappings.find(map_start); it != mappings.end() && it->second.kernel) {
      uffdio_range wake{lo, hi - lo};  // unregistering woke it already, unless it failed
      (void)ioctl(uffd, UFFDIO_WAKE, &wake);
      return;
    }
  }
  if (msg.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_MINOR) {
    // The page is in the memfd already: map it back (only this machine page; its neighbours may be missing).
    uffdio_continue cont{};
    cont.range.start = align_down(address, machine_page_size());
    cont.range.len = machine_page_size();
    (void)ioctl(uffd, UFFDIO_CONTINUE, &cont);
    return;
  }
  populate(lo, hi - lo);
}

GpuRam::GpuRam(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
GpuRam::~GpuRam() = default;

Result<std::unique_ptr<GpuRam>> GpuRam::create(Config config, HmiLog& log, std::function<bool()> links_trained) {
  if (config.window_size == 0 || !is_aligned(config.window_size, kModelPage)) return fail(kEINVAL);
  if (config.real_size > config.window_size) return fail(kEINVAL);
  auto impl = std::make_unique<Impl>(config, log, std::move(links_trained));
  NV2PT_TRY(impl->start());
  return std::unique_ptr<GpuRam>(new GpuRam(std::move(impl)));
}

const GpuRam::Config& GpuRam::config() const { return impl_->config; }

void GpuRam::set_policy(HmiPolicy policy) {
  impl_->policy.store(policy);
  MutexLock lock(impl_->mutex);
  impl_->config.policy = policy;
}

Result<void> GpuRam::read(uint64_t offset, std::span<std::byte> out) {
  const auto end = checked_add(offset, out.size());
  if (!end || *end > impl_->config.window_size) return fail(kEINVAL);
  // Model page by model page: each one is checked the way a touch through a mapping is.
  uint64_t pos = offset;
  while (pos < *end) {
    const uint64_t chunk = std::min(*end, align_down(pos, kModelPage) + kModelPage) - pos;
    auto part = out.subspan(pos - offset, chunk);
    if (const auto cause = impl_->violation(pos)) {
      if (impl_->record(pos, *cause)) raise(SIGBUS);
      if (*cause == HmiCause::kBeyondRealRam) {
        std::memset(part.data(), 0, part.size());
        pos += chunk;
        continue;
      }
    }
    NV2PT_TRY(impl_->memfd.read(pos, part.data(), part.size()));
    pos += chunk;
  }
  return {};
}

Result<void> GpuRam::write(uint64_t offset, std::span<const std::byte> in) {
  const auto end = checked_add(offset, in.size());
  if (!end || *end > impl_->config.window_size) return fail(kEINVAL);
  uint64_t pos = offset;
  while (pos < *end) {
    const uint64_t chunk = std::min(*end, align_down(pos, kModelPage) + kModelPage) - pos;
    auto part = in.subspan(pos - offset, chunk);
    if (const auto cause = impl_->violation(pos)) {
      if (impl_->record(pos, *cause)) raise(SIGBUS);
      if (*cause == HmiCause::kBeyondRealRam) {  // no RAM there: the write goes nowhere
        pos += chunk;
        continue;
      }
    }
    NV2PT_TRY(impl_->memfd.write(pos, part.data(), part.size()));
    pos += chunk;
  }
  return {};
}

Result<void*> GpuRam::map(void* addr, uint64_t offset, uint64_t len, int prot) {
  const uint64_t page = machine_page_size();
  const auto end = checked_add(offset, len);
  if (len == 0 || !end || *end > impl_->config.window_size) return fail(kEINVAL);
  if (!is_aligned(offset, page) || !is_aligned(len, page)) return fail(kEINVAL);
  if (addr != nullptr && !is_aligned(reinterpret_cast<uintptr_t>(addr), page)) return fail(kEINVAL);

  void* at = addr;
  if (at == nullptr) {
    // Reserve with slack and keep an aligned piece: the window size if the address space allows, else 64 KiB.
    for (uint64_t align : {impl_->config.window_size, kModelPage}) {
      if (!std::has_single_bit(align) || align < page) continue;
      const auto span = checked_add(len, align);
      if (!span) continue;
      void* r = mmap(nullptr, *span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
      if (r == MAP_FAILED) continue;
      const auto base = reinterpret_cast<uint64_t>(r);
      const uint64_t aligned = *align_up(base, align);
      if (aligned > base) munmap(r, aligned - base);
      const uint64_t tail = base + *span - (aligned + len);
      if (tail) munmap(reinterpret_cast<void*>(aligned + len), tail);
      at = reinterpret_cast<void*>(aligned);
      break;
    }
    if (at == nullptr) return fail(kENOMEM);
  }
  void* m = mmap(at, len, prot, MAP_SHARED | MAP_FIXED, impl_->memfd.fd(), static_cast<off_t>(offset));
  if (m == MAP_FAILED) {
    if (addr == nullptr) munmap(at, len);
    return fail(kENOMEM);
  }
  if (!impl_->register_range(reinterpret_cast<uint64_t>(m), len)) {
    // Never leave an unguarded view of GPU RAM behind: give the caller's range back as inaccessible.
    if (addr == nullptr)
      munmap(m, len);
    else
      mmap(m, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
    return fail(kEIO);
  }
  MutexLock lock(impl_->mutex);
  impl_->mappings[reinterpret_cast<uintptr_t>(m)] = Impl::Mapping{len, offset};
  impl_->serve_real_ram_by_kernel();  // trained already: only the part beyond the real RAM stays with the service
  return m;
}

void GpuRam::unmap(void* addr, uint64_t len) {
  {
    MutexLock lock(impl_->mutex);
    impl_->mappings.erase(reinterpret_cast<uintptr_t>(addr));
  }
  uffdio_range range{reinterpret_cast<uint64_t>(addr), len};
  (void)ioctl(impl_->uffd, UFFDIO_UNREGISTER, &range);
}

uint64_t GpuRam::populated_pages() const {
  // The memfd is the record, whoever filled it (the service, the kernel's fault path, write()).
  uint64_t pages = 0;
  uint64_t last = ~0ull;  // model page counted last: extents are in order, one may end inside it
  (void)impl_->memfd.for_each_data_extent(0, impl_->config.window_size, [&](uint64_t from, uint64_t to) {
    const uint64_t first = from / kModelPage;
    const uint64_t end = (to - 1) / kModelPage;
    pages += end - first + 1 - (first == last ? 1 : 0);
    last = end;
  });
  return pages;
}

uint64_t GpuRam::serviced_faults() const { return impl_->faults.load(std::memory_order_relaxed); }

bool GpuRam::served_by_kernel() const {
  MutexLock lock(impl_->mutex);
  return impl_->kernel_serves;
}

void GpuRam::links_changed() {
  MutexLock lock(impl_->mutex);
  if (impl_->links_trained && impl_->links_trained())
    impl_->serve_real_ram_by_kernel();
  else
    impl_->rearm(/*keep_mapped=*/true);
}

void GpuRam::zap() {
  // Registered whole first, then the client's page-table entries dropped with the contents kept: the next touch
  // of any page faults into the service again (a minor fault for a page the memfd holds), where the rule is
  // checked anew.
  MutexLock lock(impl_->mutex);
  impl_->rearm(/*keep_mapped=*/false);
  for (const auto& [start, m] : impl_->mappings) (void)madvise(reinterpret_cast<void*>(start), m.len, MADV_DONTNEED);
}

bool GpuRam::checks_present_pages() const { return impl_->minor_faults; }

void GpuRam::discard() {
  // Registered whole first; punching the hole then zaps every mapping of it, so the next touch faults into the
  // service again.
  MutexLock lock(impl_->mutex);
  impl_->rearm(/*keep_mapped=*/false);
  (void)impl_->memfd.discard();
}

}  // namespace nv2pt::platform
