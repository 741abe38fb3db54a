// Must NOT compile under -Wthread-safety -Werror=thread-safety: total_ is
// written without mu_ (see CMakeLists.txt).
#include "util/thread_annotations.h"

class Counter {
 public:
  void Add(int n) { total_ += n; }

 private:
  herald::detail::Mutex mu_;
  int total_ GUARDED_BY(mu_) = 0;
};

int main() {
  Counter c;
  c.Add(1);
  return 0;
}
