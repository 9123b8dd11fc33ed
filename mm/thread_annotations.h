// Clang thread-safety annotations (-Wthread-safety) and the annotated lock types mm/ uses. Under g++ the attributes
// compile to nothing; the lock types still work. (Candidate for base/ once other layers want them.)
#pragma once

#include <mutex>
#include <shared_mutex>

#if defined(__clang__)
#define NV2PT_TSA(x) __attribute__((x))
#else
#define NV2PT_TSA(x)
#endif

#define NV2PT_CAPABILITY(x) NV2PT_TSA(capability(x))
#define NV2PT_SCOPED_CAPABILITY NV2PT_TSA(scoped_lockable)
#define NV2PT_GUARDED_BY(x) NV2PT_TSA(guarded_by(x))
#define NV2PT_PT_GUARDED_BY(x) NV2PT_TSA(pt_guarded_by(x))
#define NV2PT_REQUIRES(...) NV2PT_TSA(requires_capability(__VA_ARGS__))
#define NV2PT_REQUIRES_SHARED(...) NV2PT_TSA(requires_shared_capability(__VA_ARGS__))
#define NV2PT_ACQUIRE(...) NV2PT_TSA(acquire_capability(__VA_ARGS__))
#define NV2PT_ACQUIRE_SHARED(...) NV2PT_TSA(acquire_shared_capability(__VA_ARGS__))
#define NV2PT_RELEASE(...) NV2PT_TSA(release_capability(__VA_ARGS__))
#define NV2PT_RELEASE_SHARED(...) NV2PT_TSA(release_shared_capability(__VA_ARGS__))
#define NV2PT_RELEASE_GENERIC(...) NV2PT_TSA(release_generic_capability(__VA_ARGS__))
#define NV2PT_EXCLUDES(...) NV2PT_TSA(locks_excluded(__VA_ARGS__))
#define NV2PT_RETURN_CAPABILITY(x) NV2PT_TSA(lock_returned(x))
#define NV2PT_NO_THREAD_SAFETY_ANALYSIS NV2PT_TSA(no_thread_safety_analysis)

namespace nv2pt::mm {

// std::shared_mutex with capability annotations (libstdc++'s is not annotated).
class NV2PT_CAPABILITY("mutex") SharedMutex {
 public:
  void lock() NV2PT_ACQUIRE() { mu_.lock(); }
  void unlock() NV2PT_RELEASE() { mu_.unlock(); }
  void lock_shared() NV2PT_ACQUIRE_SHARED() { mu_.lock_shared(); }
  void unlock_shared() NV2PT_RELEASE_SHARED() { mu_.unlock_shared(); }

 private:
  std::shared_mutex mu_;
};

// std::mutex with capability annotations.
class NV2PT_CAPABILITY("mutex") Mutex {
 public:
  void lock() NV2PT_ACQUIRE() { mu_.lock(); }
  void unlock() NV2PT_RELEASE() { mu_.unlock(); }

 private:
  std::mutex mu_;
};

class NV2PT_SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex& mu) NV2PT_ACQUIRE(mu) : mu_(mu) { mu_.lock(); }
  ~MutexLock() NV2PT_RELEASE() { mu_.unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex& mu_;
};

class NV2PT_SCOPED_CAPABILITY WriteLock {
 public:
  explicit WriteLock(SharedMutex& mu) NV2PT_ACQUIRE(mu) : mu_(mu) { mu_.lock(); }
  ~WriteLock() NV2PT_RELEASE() { mu_.unlock(); }
  WriteLock(const WriteLock&) = delete;
  WriteLock& operator=(const WriteLock&) = delete;

 private:
  SharedMutex& mu_;
};

class NV2PT_SCOPED_CAPABILITY ReadLock {
 public:
  explicit ReadLock(SharedMutex& mu) NV2PT_ACQUIRE_SHARED(mu) : mu_(mu) { mu_.lock_shared(); }
  ~ReadLock() NV2PT_RELEASE() { mu_.unlock_shared(); }
  ReadLock(const ReadLock&) = delete;
  ReadLock& operator=(const ReadLock&) = delete;

 private:
  SharedMutex& mu_;
};

}  // namespace nv2pt::mm
