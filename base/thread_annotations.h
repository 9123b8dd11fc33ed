// Clang thread-safety annotations (-Wthread-safety, on in every clang build) and the annotated lock types every
// layer uses instead of std::mutex / std::shared_mutex, whose libstdc++ versions carry no annotations. Under g++ the
// attributes compile to nothing; the lock types still work.
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
#define NV2PT_TRY_ACQUIRE(...) NV2PT_TSA(try_acquire_capability(__VA_ARGS__))
#define NV2PT_EXCLUDES(...) NV2PT_TSA(locks_excluded(__VA_ARGS__))
#define NV2PT_ASSERT_CAPABILITY(x) NV2PT_TSA(assert_capability(x))
#define NV2PT_RETURN_CAPABILITY(x) NV2PT_TSA(lock_returned(x))
#define NV2PT_NO_THREAD_SAFETY_ANALYSIS NV2PT_TSA(no_thread_safety_analysis)

namespace nv2pt {

// std::mutex with capability annotations.
class NV2PT_CAPABILITY("mutex") Mutex {
 public:
  void lock() NV2PT_ACQUIRE() { mu_.lock(); }
  void unlock() NV2PT_RELEASE() { mu_.unlock(); }
  bool try_lock() NV2PT_TRY_ACQUIRE(true) { return mu_.try_lock(); }
  // For a caller that holds the mutex in a way the analysis cannot follow (a lock taken in another function).
  void assert_held() const NV2PT_ASSERT_CAPABILITY(this) {}

 private:
  std::mutex mu_;
};

// std::shared_mutex with capability annotations.
class NV2PT_CAPABILITY("mutex") SharedMutex {
 public:
  void lock() NV2PT_ACQUIRE() { mu_.lock(); }
  void unlock() NV2PT_RELEASE() { mu_.unlock(); }
  void lock_shared() NV2PT_ACQUIRE_SHARED() { mu_.lock_shared(); }
  void unlock_shared() NV2PT_RELEASE_SHARED() { mu_.unlock_shared(); }

 private:
  std::shared_mutex mu_;
};

// std::lock_guard for Mutex.
class NV2PT_SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex& mu) NV2PT_ACQUIRE(mu) : mu_(mu) { mu_.lock(); }
  ~MutexLock() NV2PT_RELEASE() { mu_.unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex& mu_;
};

// std::unique_lock for Mutex, for a holder that releases it early.
class NV2PT_SCOPED_CAPABILITY UniqueMutexLock {
 public:
  explicit UniqueMutexLock(Mutex& mu) NV2PT_ACQUIRE(mu) : mu_(mu) { mu_.lock(); }
  ~UniqueMutexLock() NV2PT_RELEASE() {
    if (held_) mu_.unlock();
  }
  void unlock() NV2PT_RELEASE() {
    mu_.unlock();
    held_ = false;
  }
  UniqueMutexLock(const UniqueMutexLock&) = delete;
  UniqueMutexLock& operator=(const UniqueMutexLock&) = delete;

 private:
  Mutex& mu_;
  bool held_ = true;
};

// std::lock_guard for SharedMutex.
class NV2PT_SCOPED_CAPABILITY WriteLock {
 public:
  explicit WriteLock(SharedMutex& mu) NV2PT_ACQUIRE(mu) : mu_(mu) { mu_.lock(); }
  ~WriteLock() NV2PT_RELEASE() { mu_.unlock(); }
  WriteLock(const WriteLock&) = delete;
  WriteLock& operator=(const WriteLock&) = delete;

 private:
  SharedMutex& mu_;
};

// std::shared_lock for SharedMutex.
class NV2PT_SCOPED_CAPABILITY ReadLock {
 public:
  explicit ReadLock(SharedMutex& mu) NV2PT_ACQUIRE_SHARED(mu) : mu_(mu) { mu_.lock_shared(); }
  ~ReadLock() NV2PT_RELEASE() { mu_.unlock_shared(); }
  ReadLock(const ReadLock&) = delete;
  ReadLock& operator=(const ReadLock&) = delete;

 private:
  SharedMutex& mu_;
};

}  // namespace nv2pt
