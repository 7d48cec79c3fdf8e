// ThreadSanitizer annotations for Debian's Abseil, preloaded (LD_PRELOAD) into the TSan build
// of the tests by scripts/sanitize.sh tsan.
//
// Why: Debian's libabsl_synchronization is not built with TSan, and absl::Mutex, CondVar and
// Notification synchronize with atomics and futexes inside it, which TSan cannot see. Every
// access our code makes under an absl::Mutex would then be reported as a race. Suppressing
// those would suppress everything; instead, this library interposes the out-of-line
// functions of absl::Mutex, CondVar and Notification, calls the real ones (dlsym RTLD_NEXT)
// and tells TSan what they did, with the annotations Abseil itself makes when it is built
// with TSan (__tsan_mutex_pre_lock and the others: lock, unlock, reader lock, waits, and
// what runs inside them is ignored, as Abseil's own annotations do).
//
// Interposing needs the calls to go through the dynamic linker: true for our executables
// (Abseil is a shared library) and inside Abseil itself (built -fPIC, without -Bsymbolic).
// Built only with -DSTIP_SANITIZE=thread; loaded only into TSan-instrumented programs, whose
// runtime provides the __tsan_* functions.
#include <dlfcn.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/base/options.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include <sanitizer/tsan_interface.h>

namespace {

#define STIP_STRINGIFY_INNER(x) #x
#define STIP_STRINGIFY(x) STIP_STRINGIFY_INNER(x)

// The mangled name of absl::<inline namespace>::<rest>, e.g. Mutex::Lock() with rest
// "5Mutex4LockEv"; the inline namespace is Debian's (debian3 on Debian 12).
std::string Mangled(const char* rest) {
  const std::string ns = STIP_STRINGIFY(ABSL_OPTION_INLINE_NAMESPACE_NAME);
  return "_ZN4absl" + std::to_string(ns.size()) + ns + rest;
}

template <typename Fn>
Fn Real(const char* rest) {
  const std::string name = Mangled(rest);
  void* symbol = dlsym(RTLD_NEXT, name.c_str());
  if (symbol == nullptr) {
    std::fprintf(stderr, "absl_sync_annotations: %s not found after this library\n", name.c_str());
    std::abort();
  }
  return reinterpret_cast<Fn>(symbol);
}

// Each real function, looked up once.
#define STIP_REAL(type, rest)                \
  static const auto real = Real<type>(rest); \
  static_assert(true, "needs a semicolon")

void* Addr(const void* p) { return const_cast<void*>(p); }

// A Notification's flag, which its inline HasBeenNotified() reads with an acquiring load in
// our (instrumented) code: Notify releases on that address. Notification is { Mutex mutex_;
// std::atomic<bool> notified_yet_; } in every Abseil LTS since 2018.
void* NotifiedFlag(const absl::Notification* n) {
  return reinterpret_cast<char*>(const_cast<absl::Notification*>(n)) + sizeof(absl::Mutex);
}

void AfterLock(absl::Mutex* mu, unsigned flags) { __tsan_mutex_post_lock(mu, flags, 0); }

}  // namespace

namespace absl {
ABSL_NAMESPACE_BEGIN

Mutex::~Mutex() {
  STIP_REAL(void (*)(Mutex*), "5MutexD2Ev");
  __tsan_mutex_destroy(this, 0);
  real(this);
}

void Mutex::Lock() {
  STIP_REAL(void (*)(Mutex*), "5Mutex4LockEv");
  __tsan_mutex_pre_lock(this, 0);
  real(this);
  AfterLock(this, 0);
}

void Mutex::ReaderLock() {
  STIP_REAL(void (*)(Mutex*), "5Mutex10ReaderLockEv");
  __tsan_mutex_pre_lock(this, __tsan_mutex_read_lock);
  real(this);
  AfterLock(this, __tsan_mutex_read_lock);
}

bool Mutex::TryLock() {
  STIP_REAL(bool (*)(Mutex*), "5Mutex7TryLockEv");
  __tsan_mutex_pre_lock(this, __tsan_mutex_try_lock);
  const bool locked = real(this);
  __tsan_mutex_post_lock(this, __tsan_mutex_try_lock | (locked ? 0 : __tsan_mutex_try_lock_failed),
                         0);
  return locked;
}

bool Mutex::ReaderTryLock() {
  STIP_REAL(bool (*)(Mutex*), "5Mutex13ReaderTryLockEv");
  const unsigned flags = __tsan_mutex_read_lock | __tsan_mutex_try_lock;
  __tsan_mutex_pre_lock(this, flags);
  const bool locked = real(this);
  __tsan_mutex_post_lock(this, flags | (locked ? 0 : __tsan_mutex_try_lock_failed), 0);
  return locked;
}

void Mutex::Unlock() {
  STIP_REAL(void (*)(Mutex*), "5Mutex6UnlockEv");
  __tsan_mutex_pre_unlock(this, 0);
  real(this);  // may evaluate other threads' Conditions: ignored, as Abseil's own build does
  __tsan_mutex_post_unlock(this, 0);
}

void Mutex::ReaderUnlock() {
  STIP_REAL(void (*)(Mutex*), "5Mutex12ReaderUnlockEv");
  __tsan_mutex_pre_unlock(this, __tsan_mutex_read_lock);
  real(this);
  __tsan_mutex_post_unlock(this, __tsan_mutex_read_lock);
}

void Mutex::LockWhen(const Condition& cond) {
  STIP_REAL(void (*)(Mutex*, const Condition&), "5Mutex8LockWhenERKNS0_9ConditionE");
  __tsan_mutex_pre_lock(this, 0);
  real(this, cond);
  AfterLock(this, 0);
}

void Mutex::ReaderLockWhen(const Condition& cond) {
  STIP_REAL(void (*)(Mutex*, const Condition&), "5Mutex14ReaderLockWhenERKNS0_9ConditionE");
  __tsan_mutex_pre_lock(this, __tsan_mutex_read_lock);
  real(this, cond);
  AfterLock(this, __tsan_mutex_read_lock);
}

bool Mutex::LockWhenWithTimeout(const Condition& cond, absl::Duration timeout) {
  STIP_REAL(bool (*)(Mutex*, const Condition&, absl::Duration),
            "5Mutex19LockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  __tsan_mutex_pre_lock(this, 0);
  const bool met = real(this, cond, timeout);  // locked either way
  AfterLock(this, 0);
  return met;
}

bool Mutex::LockWhenWithDeadline(const Condition& cond, absl::Time deadline) {
  STIP_REAL(bool (*)(Mutex*, const Condition&, absl::Time),
            "5Mutex20LockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  __tsan_mutex_pre_lock(this, 0);
  const bool met = real(this, cond, deadline);
  AfterLock(this, 0);
  return met;
}

// Await releases the mutex, waits and takes it again; the Condition it evaluates meanwhile
// is read inside the ignored region.
void Mutex::Await(const Condition& cond) {
  STIP_REAL(void (*)(Mutex*, const Condition&), "5Mutex5AwaitERKNS0_9ConditionE");
  __tsan_mutex_pre_unlock(this, 0);
  real(this, cond);
  __tsan_mutex_post_unlock(this, 0);
  __tsan_mutex_pre_lock(this, 0);
  AfterLock(this, 0);
}

bool Mutex::AwaitWithTimeout(const Condition& cond, absl::Duration timeout) {
  STIP_REAL(bool (*)(Mutex*, const Condition&, absl::Duration),
            "5Mutex16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  __tsan_mutex_pre_unlock(this, 0);
  const bool met = real(this, cond, timeout);
  __tsan_mutex_post_unlock(this, 0);
  __tsan_mutex_pre_lock(this, 0);
  AfterLock(this, 0);
  return met;
}

bool Mutex::AwaitWithDeadline(const Condition& cond, absl::Time deadline) {
  STIP_REAL(bool (*)(Mutex*, const Condition&, absl::Time),
            "5Mutex17AwaitWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  __tsan_mutex_pre_unlock(this, 0);
  const bool met = real(this, cond, deadline);
  __tsan_mutex_post_unlock(this, 0);
  __tsan_mutex_pre_lock(this, 0);
  AfterLock(this, 0);
  return met;
}

// A wait releases `mu` and takes it again before returning (timed out or not).
void CondVar::Wait(Mutex* mu) {
  STIP_REAL(void (*)(CondVar*, Mutex*), "7CondVar4WaitEPNS0_5MutexE");
  __tsan_mutex_pre_unlock(mu, 0);
  __tsan_mutex_post_unlock(mu, 0);
  real(this, mu);
  __tsan_mutex_pre_lock(mu, 0);
  AfterLock(mu, 0);
}

bool CondVar::WaitWithTimeout(Mutex* mu, absl::Duration timeout) {
  STIP_REAL(bool (*)(CondVar*, Mutex*, absl::Duration),
            "7CondVar15WaitWithTimeoutEPNS0_5MutexENS0_8DurationE");
  __tsan_mutex_pre_unlock(mu, 0);
  __tsan_mutex_post_unlock(mu, 0);
  const bool timed_out = real(this, mu, timeout);
  __tsan_mutex_pre_lock(mu, 0);
  AfterLock(mu, 0);
  return timed_out;
}

bool CondVar::WaitWithDeadline(Mutex* mu, absl::Time deadline) {
  STIP_REAL(bool (*)(CondVar*, Mutex*, absl::Time),
            "7CondVar16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE");
  __tsan_mutex_pre_unlock(mu, 0);
  __tsan_mutex_post_unlock(mu, 0);
  const bool timed_out = real(this, mu, deadline);
  __tsan_mutex_pre_lock(mu, 0);
  AfterLock(mu, 0);
  return timed_out;
}

void Notification::Notify() {
  STIP_REAL(void (*)(Notification*), "12Notification6NotifyEv");
  __tsan_release(NotifiedFlag(this));
  real(this);
}

ABSL_NAMESPACE_END
}  // namespace absl
