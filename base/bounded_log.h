// The latest entries of a record that may grow without end, and the count of all of them: what a long-lived host
// records per client call (HMIs, OPAL calls) must not grow for as long as the process lives. Not locked: its
// owner's lock guards it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <utility>
#include <vector>

namespace nv2pt {

template <typename T, size_t Capacity>
class BoundedLog {
  static_assert(Capacity > 0);

 public:
  static constexpr size_t kCapacity = Capacity;

  void add(T entry) {
    if (entries_.size() == Capacity) entries_.pop_front();
    entries_.push_back(std::move(entry));
    ++count_;
  }
  // The kept entries, oldest first.
  std::vector<T> entries() const { return {entries_.begin(), entries_.end()}; }
  // Every entry added, kept or not.
  uint64_t count() const { return count_; }

 private:
  std::deque<T> entries_;
  uint64_t count_ = 0;
};

}  // namespace nv2pt
