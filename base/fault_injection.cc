#include "base/fault_injection.h"

namespace nv2pt {
namespace {

struct Countdown {
  bool armed = false;
  uint64_t remaining = 0;  // checks until the one that fails; 0 once it fired
  uint64_t checks = 0;
  bool fired = false;
};

thread_local Countdown countdown;

}  // namespace

bool fault_detail::countdown_fires() {
  if (!countdown.armed) return false;  // another thread armed its own
  ++countdown.checks;
  if (countdown.remaining == 0 || --countdown.remaining > 0) return false;
  countdown.fired = true;
  return true;
}

ScopedFailNth::ScopedFailNth(uint64_t n) {
  countdown = {.armed = true, .remaining = n, .checks = 0, .fired = false};
  fault_detail::armed_threads.fetch_add(1, std::memory_order_relaxed);
}

ScopedFailNth::~ScopedFailNth() {
  countdown.armed = false;
  fault_detail::armed_threads.fetch_sub(1, std::memory_order_relaxed);
}

bool ScopedFailNth::fired() const { return countdown.fired; }
uint64_t ScopedFailNth::checks() const { return countdown.checks; }

}  // namespace nv2pt
