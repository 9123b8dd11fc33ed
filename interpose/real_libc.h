// The libc functions the preload library wraps, resolved with dlsym(RTLD_NEXT) on first use of each one.
//
// Resolution is lazy on purpose: another library's constructor can call stat() before this library's constructors
// run (QEMU 7.2 links libnl-route, whose constructor stats /etc/libnl/classid), so no wrapper may depend on an
// initialisation step having happened.
#pragma once

#include <dlfcn.h>

#include <atomic>

// decltype(&::open) carries glibc's nonnull attributes, which a template argument drops: harmless here.
#pragma GCC diagnostic ignored "-Wignored-attributes"

namespace nv2pt::interpose::real {

// dlsym may allocate and free (dlerror's buffer), and free() is wrapped too: while a thread resolves a symbol its
// free() calls must not try to resolve "free" again.
inline thread_local int resolving = 0;

template <class Fn>
Fn* resolve(std::atomic<Fn*>& slot, const char* name) {
  Fn* fn = slot.load(std::memory_order_acquire);
  if (fn) return fn;
  ++resolving;
  fn = reinterpret_cast<Fn*>(dlsym(RTLD_NEXT, name));
  --resolving;
  slot.store(fn, std::memory_order_release);
  return fn;
}

}  // namespace nv2pt::interpose::real

// NV2PT_REAL(open) is the next definition of open() after this library (normally glibc's), with open's type.
#define NV2PT_REAL(name)                                                   \
  ([]() {                                                                  \
    static std::atomic<decltype(&::name)> slot{nullptr};                   \
    return ::nv2pt::interpose::real::resolve(slot, #name);                 \
  }())
