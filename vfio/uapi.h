// <linux/vfio.h> plus the kernel's offsetofend(), which the UAPI's argsz rules are written in, and the one way an
// ioctl argument crosses between the client and the model: copy_from_user / copy_to_user on mm's client copies, so
// an argument the client unmapped or protected is EFAULT, never a fault inside the model.
#pragma once

#include <linux/vfio.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "base/errno.h"
#include "mm/client_memory.h"

#ifndef offsetofend
#define offsetofend(TYPE, MEMBER) (offsetof(TYPE, MEMBER) + sizeof(((TYPE*)nullptr)->MEMBER))
#endif

namespace nv2pt::vfio {

// copy_from_user(&value, arg, len): the first `len` bytes of `value`; the rest is left as it was.
template <class T>
Result<void> copy_in(unsigned long arg, T& value, size_t len = sizeof(T)) {
  return mm::copy_from_client(&value, arg, std::min(len, sizeof(T)));
}

// A struct that starts with argsz: the kernel's minsz first, then whatever more of the struct the user's argsz
// covers (INJECT_ERR's error, the DDW part of GET_INFO's buffer), never past argsz. The rest stays zero.
template <class T>
Result<void> copy_in_argsz(unsigned long arg, T& value, size_t minsz) {
  value = T{};
  NV2PT_TRY(copy_in(arg, value, minsz));
  uint32_t argsz;
  static_assert(sizeof(T) >= sizeof(argsz));
  std::memcpy(&argsz, &value, sizeof(argsz));
  if (argsz > minsz) {
    NV2PT_TRY(mm::copy_from_client(reinterpret_cast<uint8_t*>(&value) + minsz, arg + minsz,
                                   std::min<size_t>(argsz, sizeof(T)) - minsz));
  }
  return {};
}

// copy_to_user(arg, &value, len).
template <class T>
Result<void> copy_out(unsigned long arg, const T& value, size_t len = sizeof(T)) {
  return mm::copy_to_client(arg, &value, std::min(len, sizeof(T)));
}

}  // namespace nv2pt::vfio
