#include "iommu/tce_table.h"

#include <sys/mman.h>

#include <cstdlib>
#include <new>

#include "base/fault_injection.h"

namespace nv2pt::iommu {
namespace {

// Indirect slots hold "address of the next block | R | W"; R|W marks the slot present (pnv_tce).
constexpr uint64_t kSlotPresent = kTceRead | kTceWrite;

std::atomic<uint64_t>* block_of(uint64_t slot_be) {
  return reinterpret_cast<std::atomic<uint64_t>*>(from_be(slot_be) & ~kSlotPresent);
}

std::atomic<uint64_t> next_uid{1};

// Blocks of this size and more come straight from mmap, as the kernel's alloc_pages hands out pages: they read as
// zero without being written, only the pages entries land on take memory, and no allocator fills them (under
// ASan the allocator's shadow fills of a multi-MiB flat table were most of a short fuzzer input's time).
constexpr uint64_t kMappedBlockBytes = 64 << 10;

void* allocate_zeroed(uint64_t bytes) {
  if (bytes < kMappedBlockBytes) return std::calloc(1, bytes);
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? nullptr : p;
}

void free_zeroed(void* p, uint64_t bytes) {
  if (bytes < kMappedBlockBytes) std::free(p);
  else munmap(p, bytes);
}

}  // namespace

TceTable::TceTable(const TableGeometry& geometry, uint64_t bus_start, Options options)
    : geometry_(geometry),
      bus_start_(bus_start),
      options_(options),
      uid_(next_uid.fetch_add(1, std::memory_order_relaxed)) {}

Result<std::unique_ptr<TceTable>> TceTable::create(const TableGeometry& geometry, uint64_t bus_start,
                                                   Options options) {
  if (bus_start & ((1ull << geometry.page_shift) - 1)) return fail(kEINVAL);
  NV2PT_TRY(check_allocatable(geometry, options.max_alloc_bytes));
  if (should_fail_allocation()) return fail(kENOMEM);
  std::unique_ptr<TceTable> table(new (std::nothrow) TceTable(geometry, bus_start, options));
  if (!table) return fail(kENOMEM);
  table->hw_.top = table->allocate_block();
  if (!table->hw_.top) return fail(kENOMEM);
  if (options.userspace_cache) {
    table->cache_.top = table->allocate_block();
    if (!table->cache_.top) return fail(kENOMEM);
  }
  return table;
}

TceTable::~TceTable() {
  if (hw_.top) free_block(hw_.top, geometry_.levels - 1);
  if (cache_.top) free_block(cache_.top, geometry_.levels - 1);
}

std::atomic<uint64_t>* TceTable::allocate_block() {
  const uint64_t bytes = geometry_.block_bytes();
  // Every block, top or lower, obeys the largest-allocation limit of the kernel's page allocator.
  if (bytes > options_.max_alloc_bytes || should_fail_allocation()) return nullptr;
  void* p = allocate_zeroed(bytes);
  if (!p) return nullptr;
  allocated_bytes_.fetch_add(bytes, std::memory_order_relaxed);
  allocated_blocks_.fetch_add(1, std::memory_order_relaxed);
  return static_cast<std::atomic<uint64_t>*>(p);
}

void TceTable::free_block(std::atomic<uint64_t>* block, unsigned level) {
  if (level > 0) {
    const uint64_t n = geometry_.level_size();
    for (uint64_t i = 0; i < n; ++i) {
      const uint64_t slot = block[i].load(std::memory_order_relaxed);
      if (from_be(slot) & kSlotPresent) free_block(block_of(slot), level - 1);
    }
  }
  free_zeroed(block, geometry_.block_bytes());
  allocated_bytes_.fetch_sub(geometry_.block_bytes(), std::memory_order_relaxed);
  allocated_blocks_.fetch_sub(1, std::memory_order_relaxed);
}

void TceTable::widen_written(uint64_t first, uint64_t end) {
  uint64_t seen = written_first_.load(std::memory_order_relaxed);
  while (first < seen && !written_first_.compare_exchange_weak(seen, first, std::memory_order_acq_rel)) {
  }
  seen = written_end_.load(std::memory_order_relaxed);
  while (end > seen && !written_end_.compare_exchange_weak(seen, end, std::memory_order_acq_rel)) {
  }
}

uint64_t TceTable::leaf_remaining(uint64_t index) const {
  const uint64_t per_leaf = geometry_.entries_per_leaf();
  return per_leaf - (index & (per_leaf - 1));
}

TceTable::Leaf TceTable::walk(Tree& tree, uint64_t index, bool alloc) {
  std::atomic<uint64_t>* block = tree.top;
  const Leaf missing{nullptr, leaf_remaining(index)};
  if (!block) return missing;
  const unsigned bits = geometry_.level_bits;
  const uint64_t mask = geometry_.level_size() - 1;
  for (unsigned level = geometry_.levels - 1; level > 0; --level) {
    std::atomic<uint64_t>& slot = block[(index >> (level * bits)) & mask];
    uint64_t value = slot.load(std::memory_order_acquire);
    if (!(from_be(value) & kSlotPresent)) {
      if (!alloc) return missing;
      std::atomic<uint64_t>* fresh = allocate_block();
      if (!fresh) return missing;
      const uint64_t published = to_be(reinterpret_cast<uint64_t>(fresh) | kSlotPresent);
      uint64_t expected = value;
      if (slot.compare_exchange_strong(expected, published, std::memory_order_acq_rel)) {
        value = published;
      } else {
        // Another thread published first: use its block, drop ours.
        free_zeroed(fresh, geometry_.block_bytes());
        allocated_bytes_.fetch_sub(geometry_.block_bytes(), std::memory_order_relaxed);
        allocated_blocks_.fetch_sub(1, std::memory_order_relaxed);
        value = expected;
      }
    }
    block = block_of(value);
  }
  const uint64_t leaf_index = geometry_.levels == 1 ? index : (index & mask);
  return {block + leaf_index, leaf_remaining(index)};
}

TceTable::Leaf TceTable::walk_const(const Tree& tree, uint64_t index) const {
  return const_cast<TceTable*>(this)->walk(const_cast<Tree&>(tree), index, /*alloc=*/false);
}

Result<TceTable::OldEntry> TceTable::exchange(uint64_t index, uint64_t hpa, DmaDirection dir, bool alloc) {
  const uint64_t perms = tce_permissions(dir);
  // The kernel BUG()s on a misaligned hpa; the model refuses it instead.
  if (hpa & ((1ull << geometry_.page_shift) - 1)) return fail(kEINVAL);
  changed();
  Leaf leaf = walk(hw_, index, alloc && perms != 0);
  if (!leaf.entries) {
    if (perms == 0) return OldEntry{};  // clearing an entry whose leaf was never allocated
    return fail(kENOMEM);
  }
  if (perms) widen_written(index, index + 1);
  const uint64_t old = from_be(leaf.entries->exchange(to_be(perms ? (hpa | perms) : 0), std::memory_order_acq_rel));
  count_live((perms != 0) - ((old & kTcePermMask) != 0));
  return OldEntry{old & ~kTcePermMask, tce_direction(old)};
}

uint64_t TceTable::get(uint64_t index) const {
  Leaf leaf = walk_const(hw_, index);
  return leaf.entries ? from_be(leaf.entries->load(std::memory_order_acquire)) : 0;
}

uint64_t TceTable::cached_ua(uint64_t index) const {
  if (!cache_.top) return 0;
  Leaf leaf = walk_const(cache_, index);
  return leaf.entries ? from_be(leaf.entries->load(std::memory_order_acquire)) : 0;
}

void TceTable::clear(uint64_t index, uint64_t n) {
  changed();
  // Outside the written range every entry is zero already.
  const Range written = written_range();
  const uint64_t end = std::min(index + std::min(n, UINT64_MAX - index), written.end);  // saturated
  index = std::max(index, written.first);
  while (index < end) {
    Leaf leaf = walk(hw_, index, /*alloc=*/false);
    const uint64_t step = std::min(end - index, leaf.count);
    if (leaf.entries) {
      for (uint64_t i = 0; i < step; ++i) {
        if (from_be(leaf.entries[i].exchange(0, std::memory_order_relaxed)) & kTcePermMask) count_live(-1);
      }
    }
    index += step;
  }
}

}  // namespace nv2pt::iommu
