// FuzzCorpus.NAME replays each fuzz target's corpus (fuzz/corpus/NAME) through
// its LLVMFuzzerTestOneInput with the normal compiler and no libFuzzer, so
// every input a fuzzer ever kept (crashes it found included) is re-checked
// on each CI run. scripts/fuzz.sh does the fuzzing itself, with clang.
#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

TEST(FuzzCorpus, HERALD_FUZZ_NAME) {
  std::filesystem::path dir = HERALD_FUZZ_CORPUS;
  ASSERT_TRUE(std::filesystem::is_directory(dir)) << dir;
  int n = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    std::ifstream f(entry.path(), std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    std::string data = ss.str();
    SCOPED_TRACE(entry.path().string());
    // A failed invariant aborts the test binary; reaching the end passes.
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(data.data()),
                           data.size());
    ++n;
  }
  EXPECT_GT(n, 0) << "empty corpus " << dir;
}
