#include "iommu/table_group.h"

namespace nv2pt::iommu {

PageSizeMask page_size_mask(const std::vector<uint32_t>& shifts) {
  PageSizeMask mask = 0;
  for (uint32_t s : shifts) {
    if (s < 64) mask |= 1ull << s;
  }
  return mask;
}

TableGroup::TableGroup(std::string name, Ops ops, Properties properties, std::vector<Pe*> members)
    : name_(std::move(name)), ops_(ops), properties_(properties), members_(std::move(members)) {
  if (ops_ == Ops::kLegacy) {
    // A legacy group comes with its 32-bit window already built by the host (one level).
    auto geometry = compute_geometry(properties_.tce32_page_shift, properties_.tce32_size, 1);
    if (geometry) {
      auto table = TceTable::create(*geometry, properties_.tce32_start,
                                    {.userspace_cache = false, .max_alloc_bytes = ~0ull});
      if (table) legacy_table_ = std::move(*table);
    }
  }
}

TableGroup::~TableGroup() = default;

Result<std::unique_ptr<TceTable>> TableGroup::create_table(unsigned num, unsigned page_shift, uint64_t window_size,
                                                           unsigned levels, uint64_t max_alloc_bytes) const {
  if (num >= kMaxWindows) return fail(kEINVAL);
  const TableGeometry geometry = NV2PT_TRY(compute_geometry(page_shift, window_size, levels));
  const uint64_t bus_start = num == 0 ? properties_.tce32_start : kWindow1BusStart;
  return TceTable::create(geometry, bus_start, {.userspace_cache = true, .max_alloc_bytes = max_alloc_bytes});
}

Result<void> TableGroup::set_window(unsigned num, TceTable* table) {
  if (num >= kMaxWindows) return fail(kEINVAL);
  for (size_t i = 0; i < members_.size(); ++i) {
    if (auto r = members_[i]->set_window(num, table); !r) {
      for (size_t j = 0; j < i; ++j) members_[j]->unset_window(num);
      return r;
    }
  }
  MutexLock lock(mutex_);
  tables_[num] = table;
  return {};
}

void TableGroup::unset_window(unsigned num) {
  if (num >= kMaxWindows) return;
  for (Pe* pe : members_) pe->unset_window(num);
  MutexLock lock(mutex_);
  tables_[num] = nullptr;
}

TceTable* TableGroup::table(unsigned num) const {
  if (num >= kMaxWindows) return nullptr;
  if (ops_ == Ops::kLegacy) return num == 0 ? legacy_table_.get() : nullptr;
  MutexLock lock(mutex_);
  return tables_[num];
}

void TableGroup::take_ownership() {
  MutexLock lock(mutex_);
  for (Pe* pe : members_) pe->take_ownership();
  tables_[0] = nullptr;
  owned_by_user_ = true;
}

void TableGroup::release_ownership() {
  MutexLock lock(mutex_);
  for (Pe* pe : members_) pe->release_ownership();
  tables_.fill(nullptr);
  owned_by_user_ = false;
}

bool TableGroup::owned_by_user() const {
  MutexLock lock(mutex_);
  return owned_by_user_;
}

}  // namespace nv2pt::iommu
