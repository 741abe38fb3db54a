// Names the calling thread, as `top -H`, `ps -L`, `perf` and gdb show it:
// herald's long-lived threads are named "herald-" and what they do
// (docs/internals.md lists them). Linux keeps 15 characters.
#ifndef HERALD_UTIL_THREAD_NAME_H_
#define HERALD_UTIL_THREAD_NAME_H_

#include <pthread.h>

namespace herald::detail {

inline void NameThisThread(const char* name) {
  (void)pthread_setname_np(pthread_self(), name);
}

}  // namespace herald::detail

#endif  // HERALD_UTIL_THREAD_NAME_H_
