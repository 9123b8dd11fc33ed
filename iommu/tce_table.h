// A multi-level TCE table with indirect levels allocated on demand (pci-ioda-tce.c, v5.4+), and its user-address
// cache of the same shape (it_userspace) that v2 containers and KVM use to find the registration behind each TCE.
//
// Only the top block exists after creation. Lower blocks are allocated when an entry below them is first written and
// published with compare-and-swap, so two threads racing on the same missing block end with exactly one winner and
// no leak. A published block is never removed before the table is freed (so clear() may skip missing leaves).
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>

#include "base/thread_annotations.h"
#include "base/errno.h"
#include "iommu/table_geometry.h"
#include "iommu/tce.h"

namespace nv2pt::iommu {

// An exchange of an entry by the holder of TceTable::update_mutex(): a load and a store, not a locked instruction.
// Concurrent readers see the old or the new word, as with an exchange.
inline uint64_t swap_unshared(std::atomic<uint64_t>& entry, uint64_t value) {
  const uint64_t old = entry.load(std::memory_order_relaxed);
  entry.store(value, std::memory_order_release);
  return old;
}

class TceTable {
 public:
  struct Options {
    bool userspace_cache = true;  // VFIO and KVM tables have one; host-owned tables do not
    uint64_t max_alloc_bytes = kDefaultMaxAllocBytes;
  };

  // A run of consecutive entries inside one leaf block: the tight loops of MAP/UNMAP walk the tree once per leaf.
  struct Leaf {
    std::atomic<uint64_t>* entries = nullptr;  // big-endian words; nullptr if the leaf is missing
    // Entries from the requested index to the end of its leaf block, also when the leaf is missing (so a loop
    // can skip the whole block).
    uint64_t count = 0;
  };

  struct OldEntry {
    uint64_t hpa = 0;
    DmaDirection direction = DmaDirection::kNone;
  };

  // EINVAL for a bad geometry (see compute_geometry), ENOMEM if the top block exceeds the allocation limit or cannot
  // be allocated. `bus_start` must be aligned to the IOMMU page.
  static Result<std::unique_ptr<TceTable>> create(const TableGeometry& geometry, uint64_t bus_start,
                                                  Options options);
  ~TceTable();
  TceTable(const TceTable&) = delete;
  TceTable& operator=(const TceTable&) = delete;

  const TableGeometry& geometry() const { return geometry_; }
  unsigned page_shift() const { return geometry_.page_shift; }
  uint64_t page_size() const { return 1ull << geometry_.page_shift; }
  uint64_t bus_start() const { return bus_start_; }
  // End of the bus space the table covers (a small window is widened: docs/kernel/tce-tables.md#small-windows).
  uint64_t bus_end() const { return bus_start_ + geometry_.effective_window(); }
  uint64_t size() const { return geometry_.size(); }  // entries
  bool has_userspace_cache() const { return options_.userspace_cache; }
  bool contains(uint64_t bus_addr) const { return bus_addr >= bus_start_ && bus_addr < bus_end(); }

  // Entry `index` is relative to the window start. Callers bound it by size(); the walk itself does not.
  // Both hand out writable entries, so both count as a change (generation()). hw_leaf hands out at most `n`
  // entries; with `alloc` the caller may make them valid (missing levels are allocated, and the written range
  // grows over them), without it the caller only clears entries.
  Leaf hw_leaf(uint64_t index, uint64_t n, bool alloc) {
    changed();
    Leaf leaf = walk(hw_, index, alloc);
    leaf.count = std::min(leaf.count, n);
    if (alloc && leaf.entries) widen_written(index, index + leaf.count);
    return leaf;
  }
  Leaf cache_leaf(uint64_t index, bool alloc) {
    changed();
    return walk(cache_, index, alloc);
  }

  // Swaps in `hpa | permissions(dir)` and reports what was there. Direction none with a missing leaf succeeds
  // without allocating. ENOMEM if a level is missing and cannot be allocated (or alloc is false).
  Result<OldEntry> exchange(uint64_t index, uint64_t hpa, DmaDirection dir, bool alloc = true);
  // The raw TCE in host byte order, 0 if a level is missing.
  uint64_t get(uint64_t index) const;
  // The user address cached for an entry, 0 if none.
  uint64_t cached_ua(uint64_t index) const;
  // Zeroes [index, index+n) of the hardware table, skipping missing leaves.
  void clear(uint64_t index, uint64_t n);

  // Calls fn(first_index, leaf) for every allocated leaf block of the hardware table (or of the cache), in index
  // order: the invariant checker and reports walk only what exists.
  template <class Fn>
  void for_each_leaf(bool cache, Fn&& fn) const {
    const Tree& tree = cache ? cache_ : hw_;
    if (tree.top) visit(tree.top, geometry_.levels - 1, 0, fn);
  }

  // Serialises the writers of entries and their cache words: the container's MAP/UNMAP hold it for the call (they
  // are serialised by the container's lock already, so it is uncontended then), KVM's hypercalls for the host
  // entries of one guest TCE, which they write without the container's lock. A writer thus sees the entry and its
  // cache word as a pair, and under the lock they are swapped with plain loads and stores (swap_unshared). Readers
  // (translations, reports) need no lock. Take it after the registry's read guard: MutexLock l(t.update_mutex()).
  Mutex& update_mutex() NV2PT_RETURN_CAPABILITY(update_mutex_) { return update_mutex_; }

  // A table its owner (the container) took out of service: KVM may still hold it, but writes nothing more into it.
  // The owner retires it before it clears it for the last time, so no entry written later can outlive the clear.
  void retire() {
    MutexLock lock(update_mutex_);
    retired_.store(true, std::memory_order_relaxed);
  }
  bool retired() const { return retired_.load(std::memory_order_relaxed); }  // read it under update_mutex()

  // Valid entries (R or W set) in the hardware table. exchange() and clear() keep it; callers that write leaf
  // entries directly through hw_leaf() report each entry they make valid (+1) or invalid (-1).
  uint64_t live_entries() const { return live_entries_.load(std::memory_order_relaxed); }
  void count_live(int64_t delta) { live_entries_.fetch_add(static_cast<uint64_t>(delta), std::memory_order_relaxed); }

  // A table's identity and a count that moves whenever an entry of either tree may have changed (every writer goes
  // through exchange, clear, hw_leaf or cache_leaf, and moves it before writing): an observer that saw (uid,
  // generation) before, with no writer active since, has nothing new to look at. The invariant checker, run after
  // every fuzzer call, walks only tables that changed. uid is unique for the process's lifetime (a new table at a
  // freed one's address gets a new uid). Generation 0: nothing was ever handed out for writing, so every entry of
  // both trees is still the zero of its allocation (create() writes none).
  uint64_t uid() const { return uid_; }
  uint64_t generation() const { return generation_.load(std::memory_order_acquire); }

  // Entries [first, end) of the hardware table: every entry outside has been zero since the table was created
  // (every writer of a valid entry widens it first; clears do not narrow it). clear() and the invariant checker
  // look only inside, so a large flat table with a few entries costs what those entries cost. Empty: first == end.
  struct Range {
    uint64_t first = 0;
    uint64_t end = 0;
  };
  Range written_range() const {
    const uint64_t end = written_end_.load(std::memory_order_acquire);
    return {std::min(written_first_.load(std::memory_order_acquire), end), end};
  }

  // Bytes of level blocks really allocated, hardware table and cache together.
  uint64_t allocated_bytes() const { return allocated_bytes_.load(std::memory_order_relaxed); }
  // Level blocks allocated so far (both trees).
  uint64_t allocated_blocks() const { return allocated_blocks_.load(std::memory_order_relaxed); }

 private:
  struct Tree {
    std::atomic<uint64_t>* top = nullptr;
  };

  TceTable(const TableGeometry& geometry, uint64_t bus_start, Options options);

  void changed() { generation_.fetch_add(1, std::memory_order_acq_rel); }
  void widen_written(uint64_t first, uint64_t end);

  Leaf walk(Tree& tree, uint64_t index, bool alloc);
  Leaf walk_const(const Tree& tree, uint64_t index) const;
  std::atomic<uint64_t>* allocate_block();
  void free_block(std::atomic<uint64_t>* block, unsigned level);
  uint64_t leaf_remaining(uint64_t index) const;

  template <class Fn>
  void visit(std::atomic<uint64_t>* block, unsigned level, uint64_t first, Fn& fn) const {
    if (level == 0) {
      fn(first, Leaf{block, geometry_.entries_per_leaf()});
      return;
    }
    const unsigned shift = level * geometry_.level_bits;
    for (uint64_t i = 0; i < geometry_.level_size(); ++i) {
      const uint64_t slot = from_be(block[i].load(std::memory_order_acquire));
      if (slot & (kTceRead | kTceWrite)) {
        visit(reinterpret_cast<std::atomic<uint64_t>*>(slot & ~(kTceRead | kTceWrite)), level - 1,
              first + (i << shift), fn);
      }
    }
  }

  TableGeometry geometry_;
  uint64_t bus_start_;
  Options options_;
  Tree hw_;
  Tree cache_;
  std::atomic<uint64_t> allocated_bytes_{0};
  std::atomic<uint64_t> allocated_blocks_{0};
  std::atomic<uint64_t> live_entries_{0};
  const uint64_t uid_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<uint64_t> written_first_{UINT64_MAX};
  std::atomic<uint64_t> written_end_{0};
  Mutex update_mutex_;
  std::atomic<bool> retired_{false};
};

}  // namespace nv2pt::iommu
