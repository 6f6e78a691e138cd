// The FP32 baseline: at::matmul on the same GEMM shape (kept alone: LibTorch headers are slow).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <benchmark/benchmark.h>

namespace dmx_bench {

void torch_matmul(benchmark::State& state, int threads) {
  const int64_t M = state.range(0), N = state.range(1), K = state.range(2);
  at::set_num_threads(threads);
  at::manual_seed(1);
  const at::Tensor a = at::randn({M, K});
  const at::Tensor wt = at::randn({N, K}).t();  // a Linear layer's weight, transposed view
  at::Tensor c;
  for (auto _ : state) {
    c = at::matmul(a, wt);
    benchmark::DoNotOptimize(c.data_ptr());
  }
  state.counters["GFLOP/s"] =
      benchmark::Counter(2.0 * M * N * K * state.iterations() / 1e9, benchmark::Counter::kIsRate);
}

}  // namespace dmx_bench
