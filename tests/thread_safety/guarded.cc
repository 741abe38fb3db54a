// Compiles cleanly under -Wthread-safety (see CMakeLists.txt).
#include "util/thread_annotations.h"

class Counter {
 public:
  void Add(int n) EXCLUDES(mu_) {
    herald::detail::MutexLock lock(&mu_);
    AddLocked(n);
  }
  int WaitForAtLeast(int n) EXCLUDES(mu_) {
    herald::detail::MutexLock lock(&mu_);
    while (total_ < n) cv_.Wait(&mu_);
    return total_;
  }

 private:
  void AddLocked(int n) REQUIRES(mu_) {
    total_ += n;
    cv_.SignalAll();
  }

  herald::detail::Mutex mu_;
  herald::detail::CondVar cv_;
  int total_ GUARDED_BY(mu_) = 0;
};

int main() {
  Counter c;
  c.Add(1);
  return c.WaitForAtLeast(1) == 1 ? 0 : 1;
}
