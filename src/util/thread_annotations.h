// Clang thread-safety annotations, and a mutex the analysis understands.
//
// The macros state which mutex guards a member and which locks a function
// needs, so that clang's -Wthread-safety checks them at compile time (the
// HERALD_THREAD_SAFETY=ON build turns its findings into errors; see
// docs/building.md). Under other compilers they expand to nothing. After
// LevelDB's port/thread_annotations.h and clang's documentation
// (https://clang.llvm.org/docs/ThreadSafetyAnalysis.html).
//
//   class Counter {
//    public:
//     void Add(int n) EXCLUDES(mu_) {
//       detail::MutexLock lock(&mu_);
//       total_ += n;
//     }
//    private:
//     detail::Mutex mu_;
//     int total_ GUARDED_BY(mu_) = 0;
//   };
//
// libstdc++'s std::mutex carries no annotations, so the analysis cannot see
// it being locked: guard members with detail::Mutex and lock it with
// detail::MutexLock (or Lock/Unlock). detail::CondVar waits on a
// detail::Mutex.
//
// Thread safety: Mutex and CondVar are as thread-safe as std::mutex and
// std::condition_variable; a MutexLock belongs to the thread that made it.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <shared_mutex>

#if defined(__clang__)
#define HERALD_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define HERALD_THREAD_ANNOTATION(x)
#endif

// On a class: it is a lock (a "capability") the analysis tracks.
#define CAPABILITY(x) HERALD_THREAD_ANNOTATION(capability(x))
// On a class: an RAII object that holds a capability while it lives.
#define SCOPED_CAPABILITY HERALD_THREAD_ANNOTATION(scoped_lockable)
// On a member: read and written only with mutex `x` held.
#define GUARDED_BY(x) HERALD_THREAD_ANNOTATION(guarded_by(x))
// On a pointer member: what it points to is guarded by `x`.
#define PT_GUARDED_BY(x) HERALD_THREAD_ANNOTATION(pt_guarded_by(x))
// On a mutex member: the lock order (this one after / before the others).
#define ACQUIRED_AFTER(...) \
  HERALD_THREAD_ANNOTATION(acquired_after(__VA_ARGS__))
#define ACQUIRED_BEFORE(...) \
  HERALD_THREAD_ANNOTATION(acquired_before(__VA_ARGS__))
// On a function: the caller must hold (exclusively / shared) the mutexes.
#define REQUIRES(...) HERALD_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
#define REQUIRES_SHARED(...) \
  HERALD_THREAD_ANNOTATION(requires_shared_capability(__VA_ARGS__))
// On a function: it locks (and returns holding) / unlocks the mutexes.
#define ACQUIRE(...) HERALD_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define ACQUIRE_SHARED(...) \
  HERALD_THREAD_ANNOTATION(acquire_shared_capability(__VA_ARGS__))
#define RELEASE(...) HERALD_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define RELEASE_SHARED(...) \
  HERALD_THREAD_ANNOTATION(release_shared_capability(__VA_ARGS__))
// On a function: it tries to lock; the first argument is the success value.
#define TRY_ACQUIRE(...) \
  HERALD_THREAD_ANNOTATION(try_acquire_capability(__VA_ARGS__))
// On a function: the caller must not hold the mutexes (it locks them).
#define EXCLUDES(...) HERALD_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
// On a function: asserts at run time that the mutex is held.
#define ASSERT_CAPABILITY(x) HERALD_THREAD_ANNOTATION(assert_capability(x))
// On a function: it returns a reference to the mutex `x`.
#define RETURN_CAPABILITY(x) HERALD_THREAD_ANNOTATION(lock_returned(x))
// On a function: not checked (say why beside it).
#define NO_THREAD_SAFETY_ANALYSIS \
  HERALD_THREAD_ANNOTATION(no_thread_safety_analysis)

namespace herald::detail {

// std::mutex with annotations.
class CAPABILITY("mutex") Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void Lock() ACQUIRE() { mu_.lock(); }
  void Unlock() RELEASE() { mu_.unlock(); }
  bool TryLock() TRY_ACQUIRE(true) { return mu_.try_lock(); }
  // Tells the analysis the mutex is held here (no run-time check).
  void AssertHeld() const ASSERT_CAPABILITY(this) {}

 private:
  friend class CondVar;
  std::mutex mu_;
};

// Holds a Mutex for its lifetime.
class SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex* mu) ACQUIRE(mu) : mu_(mu) { mu_->Lock(); }
  ~MutexLock() RELEASE() { mu_->Unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex* const mu_;
};

// std::shared_mutex with annotations: many readers or one writer.
class CAPABILITY("shared_mutex") SharedMutex {
 public:
  SharedMutex() = default;
  SharedMutex(const SharedMutex&) = delete;
  SharedMutex& operator=(const SharedMutex&) = delete;

  void Lock() ACQUIRE() { mu_.lock(); }
  void Unlock() RELEASE() { mu_.unlock(); }
  void ReaderLock() ACQUIRE_SHARED() { mu_.lock_shared(); }
  void ReaderUnlock() RELEASE_SHARED() { mu_.unlock_shared(); }

 private:
  std::shared_mutex mu_;
};

// Holds a SharedMutex exclusively for its lifetime.
class SCOPED_CAPABILITY WriterLock {
 public:
  explicit WriterLock(SharedMutex* mu) ACQUIRE(mu) : mu_(mu) { mu_->Lock(); }
  ~WriterLock() RELEASE() { mu_->Unlock(); }
  WriterLock(const WriterLock&) = delete;
  WriterLock& operator=(const WriterLock&) = delete;

 private:
  SharedMutex* const mu_;
};

// Holds a SharedMutex shared for its lifetime.
class SCOPED_CAPABILITY ReaderLock {
 public:
  explicit ReaderLock(SharedMutex* mu) ACQUIRE_SHARED(mu) : mu_(mu) {
    mu_->ReaderLock();
  }
  ~ReaderLock() RELEASE() { mu_->ReaderUnlock(); }
  ReaderLock(const ReaderLock&) = delete;
  ReaderLock& operator=(const ReaderLock&) = delete;

 private:
  SharedMutex* const mu_;
};

// A condition variable; each wait names the Mutex the caller holds (as
// absl::CondVar does, so the analysis can check it). As with
// std::condition_variable, a wait can end spuriously: wait in a loop on the
// guarded condition.
class CondVar {
 public:
  CondVar() = default;
  CondVar(const CondVar&) = delete;
  CondVar& operator=(const CondVar&) = delete;

  // Releases *mu while waiting; holds it again on return.
  void Wait(Mutex* mu) REQUIRES(mu) {
    std::unique_lock<std::mutex> lock(mu->mu_, std::adopt_lock);
    cv_.wait(lock);
    lock.release();
  }
  // As Wait, until `deadline`; false when it passed.
  template <class Clock, class Duration>
  bool WaitUntil(Mutex* mu,
                 const std::chrono::time_point<Clock, Duration>& deadline)
      REQUIRES(mu) {
    std::unique_lock<std::mutex> lock(mu->mu_, std::adopt_lock);
    bool woken = cv_.wait_until(lock, deadline) == std::cv_status::no_timeout;
    lock.release();
    return woken;
  }
  void Signal() { cv_.notify_one(); }
  void SignalAll() { cv_.notify_all(); }

 private:
  std::condition_variable cv_;
};

}  // namespace herald::detail
