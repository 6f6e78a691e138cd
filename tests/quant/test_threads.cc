// The thread policy (configure_threads): an explicit count is exact and lands in OpenBLAS with
// LibTorch's pool at one thread; the default follows the work size; bad counts are refused.
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <stdexcept>

#include "dmx/quant/threads.h"

using namespace dmx::quant;

TEST(Threads, ExplicitCountIsExactAndOnePoolComputes) {
  for (int n : {1, 2, 3}) {
    const ThreadChoice c = configure_threads(n, /*work_size=*/0);
    EXPECT_EQ(c.threads, n);
    EXPECT_FALSE(c.defaulted);
    if (c.blas_threads > 0) {  // OpenBLAS loaded (Debian's LibTorch): it alone runs in parallel
      EXPECT_EQ(blas_threads(), n);
      EXPECT_EQ(c.torch_threads, 1);
      EXPECT_EQ(at::get_num_threads(), 1);
    } else {
      EXPECT_EQ(at::get_num_threads(), n);
    }
  }
  configure_threads(1, 0);
}

TEST(Threads, DefaultFollowsTheWorkSize) {
  EXPECT_EQ(thread_work_size(128, 192), 24576);
  EXPECT_EQ(thread_work_size(0, 192), 0);
  EXPECT_EQ(default_threads(kParallelWorkThreshold - 1), 1);
  EXPECT_EQ(default_threads(kParallelWorkThreshold), available_cores());
  const ThreadChoice small = configure_threads(0, thread_work_size(11, 64));
  EXPECT_TRUE(small.defaulted);
  EXPECT_EQ(small.threads, 1);
  const ThreadChoice big = configure_threads(0, thread_work_size(2048, 192));
  EXPECT_EQ(big.threads, available_cores());
  EXPECT_NE(big.describe().find("default"), std::string::npos);
  configure_threads(1, 0);
}

TEST(Threads, BadCountsAreRefusedInOneLine) {
  for (int64_t bad : {int64_t{-1}, int64_t{kMaxThreads} + 1, int64_t{1} << 40}) {
    try {
      configure_threads(bad, 0);
      FAIL() << bad << " accepted";
    } catch (const std::invalid_argument& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("--threads"), std::string::npos) << msg;
      EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    }
  }
}
