// Checked arithmetic for every size and offset that comes from a client or a topology.
#pragma once

#include <bit>
#include <cstdint>
#include <optional>

namespace nv2pt {

// nullopt on overflow.
constexpr std::optional<uint64_t> checked_add(uint64_t a, uint64_t b) {
  uint64_t r;
  if (__builtin_add_overflow(a, b, &r)) return std::nullopt;
  return r;
}

constexpr std::optional<uint64_t> checked_mul(uint64_t a, uint64_t b) {
  uint64_t r;
  if (__builtin_mul_overflow(a, b, &r)) return std::nullopt;
  return r;
}

// a << shift, nullopt if bits would be lost.
constexpr std::optional<uint64_t> checked_shl(uint64_t a, unsigned shift) {
  if (shift >= 64) return a == 0 ? std::optional<uint64_t>(0) : std::nullopt;
  if (shift && (a >> (64 - shift))) return std::nullopt;
  return a << shift;
}

constexpr bool is_aligned(uint64_t v, uint64_t alignment) { return (v & (alignment - 1)) == 0; }

constexpr uint64_t align_down(uint64_t v, uint64_t alignment) { return v & ~(alignment - 1); }

// nullopt if rounding up overflows.
constexpr std::optional<uint64_t> align_up(uint64_t v, uint64_t alignment) {
  auto r = checked_add(v, alignment - 1);
  if (!r) return std::nullopt;
  return *r & ~(alignment - 1);
}

// Does [a, a+alen) overlap [b, b+blen)? Both ranges must not wrap (callers check that first).
constexpr bool ranges_overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen) {
  return a < b + blen && b < a + alen;
}

// Lowest set bit of v as a shift (64 for 0), the natural alignment of an address.
constexpr unsigned natural_shift(uint64_t v) { return v ? static_cast<unsigned>(std::countr_zero(v)) : 64u; }

}  // namespace nv2pt
