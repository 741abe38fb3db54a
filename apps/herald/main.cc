// The herald command: parse, dispatch, exit status (see src/cli/cli.h).
#include <iostream>
#include <string>
#include <vector>

#include "cli/cli.h"

int main(int argc, char** argv) {
  std::ios::sync_with_stdio(false);
  std::vector<std::string> args(argv + 1, argv + argc);
  return herald::cli::Main(args, std::cout, std::cerr);
}
