// dMX CPU kernel benchmarks. Memory bandwidth (copy, read-only sum) is measured first in the same
// run; every kernel figure is also reported as a ratio of it (counters `xcopy`, `xread`).
//   dmx-bench-kernels [--threads N] [--quick] [--no-prepack] [google-benchmark flags]
// MX x MX GEMMs use weights packed once with pack_weights() (label "prepacked W" where the pair
// has a prepacked kernel); --no-prepack times gemm(A, W), which packs W on every call.
#include <benchmark/benchmark.h>
#include <dmx/golden.h>
#include <dmx/kernels.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace dmx_bench {
void torch_matmul(benchmark::State& state, int threads);
}

namespace {

using namespace dmx;
using namespace dmx::kernels;

int g_threads = 2;
bool g_prepack = true;  // MX x MX GEMM/GEMV with pack_weights() done once, outside the timing
double g_copy_gbs = 0, g_read_gbs = 0;
constexpr size_t kBwBytes = size_t(512) << 20;  // per buffer: far beyond the caches

// Bandwidth kernels over g_threads threads: copy (bytes read + written) and a read-only sum.
double measure(bool copy, std::vector<float>& src, std::vector<float>& dst) {
  const size_t n = src.size();
  double best = 1e30;
  for (int rep = 0; rep < 5; ++rep) {
    std::vector<std::thread> ts;
    std::vector<double> sums(g_threads);
    const auto t0 = std::chrono::steady_clock::now();
    for (int t = 0; t < g_threads; ++t)
      ts.emplace_back([&, t] {
        const size_t b = n * t / g_threads, e = n * (t + 1) / g_threads;
        if (copy) {
          std::memcpy(&dst[b], &src[b], (e - b) * sizeof(float));
        } else {
          float s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
          for (size_t i = b; i + 8 <= e; i += 8) {
            s0 += src[i];
            s1 += src[i + 1];
            s2 += src[i + 2];
            s3 += src[i + 3];
            s4 += src[i + 4];
            s5 += src[i + 5];
            s6 += src[i + 6];
            s7 += src[i + 7];
          }
          sums[t] = s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7;
        }
      });
    for (auto& t : ts) t.join();
    benchmark::DoNotOptimize(sums.data());
    best = std::min(best,
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  const double bytes = double(n) * sizeof(float) * (copy ? 2 : 1);
  return bytes / best / 1e9;
}

// Measured again as a benchmark (once per repetition) so that a report can take the highest
// bandwidth seen during the run: the startup figure alone flatters every ratio when the machine
// was busy at startup.
void BM_Bandwidth(benchmark::State& state) {
  std::vector<float> a(kBwBytes / 4, 1.0f), b(kBwBytes / 4, 0.0f);
  double copy = 0, read = 0;
  for (auto _ : state) {
    copy = measure(true, a, b);
    read = measure(false, a, b);
  }
  state.counters["copy_GB/s"] = copy;
  state.counters["read_GB/s"] = read;
}

struct MxData {
  MxFormat f;
  size_t rows, cols;
  std::vector<uint8_t> codes, scales;
  MxMatrixView view() const { return {f, rows, cols, codes.data(), scales.data()}; }
};

MxData make_mx(MxFormat f, size_t rows, size_t cols, uint32_t seed) {
  std::vector<float> x(rows * cols);
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0, 0.02f);
  for (auto& v : x) v = nd(rng);
  MxData d{f, rows, cols, std::vector<uint8_t>(rows * packed_row_bytes(f, cols)),
           std::vector<uint8_t>(rows * cols / kBlockSize)};
  quantize(f, x.data(), rows, cols, d.codes.data(), d.scales.data(), {},
           {default_path(), g_threads});
  return d;
}

void BM_Quantize(benchmark::State& state) {
  const MxFormat f = MxFormat(state.range(0));
  const size_t rows = 4096, cols = 4096;
  std::vector<float> x(rows * cols);
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0, 1);
  for (auto& v : x) v = nd(rng);
  std::vector<uint8_t> codes(rows * packed_row_bytes(f, cols)), scales(rows * cols / 32);
  const KernelConfig cfg{default_path(), g_threads};
  for (auto _ : state) {
    quantize(f, x.data(), rows, cols, codes.data(), scales.data(), {}, cfg);
    benchmark::ClobberMemory();
  }
  const double bytes = double(x.size()) * 4 + codes.size() + scales.size();
  const double gbs = bytes * state.iterations() / 1e9;
  state.counters["GB/s"] = benchmark::Counter(gbs, benchmark::Counter::kIsRate);
  state.counters["xcopy"] = benchmark::Counter(gbs / g_copy_gbs, benchmark::Counter::kIsRate);
  state.counters["Gelem/s"] =
      benchmark::Counter(double(x.size()) * state.iterations() / 1e9, benchmark::Counter::kIsRate);
  state.SetLabel(format_name(f));
}

void BM_Dequantize(benchmark::State& state) {
  const MxFormat f = MxFormat(state.range(0));
  const MxData d = make_mx(f, 4096, 4096, 8);
  std::vector<float> out(d.rows * d.cols);
  const KernelConfig cfg{default_path(), g_threads};
  for (auto _ : state) {
    dequantize(d.view(), out.data(), cfg);
    benchmark::ClobberMemory();
  }
  const double bytes = double(out.size()) * 4 + d.codes.size() + d.scales.size();
  const double gbs = bytes * state.iterations() / 1e9;
  state.counters["GB/s"] = benchmark::Counter(gbs, benchmark::Counter::kIsRate);
  state.counters["xcopy"] = benchmark::Counter(gbs / g_copy_gbs, benchmark::Counter::kIsRate);
  state.SetLabel(format_name(f));
}

// args: M, N, K, weight format, activation format (0..5 MX, 6 = FP32), path (1 avx2, 2 avx512)
void BM_Gemm(benchmark::State& state) {
  const size_t M = state.range(0), N = state.range(1), K = state.range(2);
  const MxFormat fw = MxFormat(state.range(3));
  const bool f32 = state.range(4) == 6;
  const KernelPath path = KernelPath(state.range(5));
  const MxData W = make_mx(fw, N, K, 11);
  std::vector<float> C(M * N), Af;
  MxData A;
  if (f32) {
    Af.resize(M * K);
    std::mt19937 rng(12);
    std::normal_distribution<float> nd(0, 1);
    for (auto& v : Af) v = nd(rng);
  } else {
    A = make_mx(MxFormat(state.range(4)), M, K, 12);
  }
  const KernelConfig cfg{path, g_threads};
  // A Linear layer's weights are packed once (pack_weights); gemm(A, packed) == gemm(A, W).
  const PackedWeights pw = !f32 && g_prepack ? pack_weights(W.view(), A.f, cfg) : PackedWeights();
  for (auto _ : state) {
    if (f32)
      gemm_f32(Af.data(), M, K, W.view(), C.data(), N, cfg);
    else if (pw.prepacked())
      gemm(A.view(), pw, C.data(), N, cfg);
    else
      gemm(A.view(), W.view(), C.data(), N, cfg);
    benchmark::ClobberMemory();
  }
  const double wbytes = double(W.codes.size() + W.scales.size());
  const double wgbs = wbytes * state.iterations() / 1e9;
  state.counters["W_GB/s"] = benchmark::Counter(wgbs, benchmark::Counter::kIsRate);
  state.counters["xread"] = benchmark::Counter(wgbs / g_read_gbs, benchmark::Counter::kIsRate);
  state.counters["GFLOP/s"] =
      benchmark::Counter(2.0 * M * N * K * state.iterations() / 1e9, benchmark::Counter::kIsRate);
  const MxFormat fa = f32 ? MxFormat::E2M1 : MxFormat(state.range(4));
  state.SetLabel(std::string("W=") + format_name(fw) + " A=" + (f32 ? "FP32" : format_name(fa)) +
                 " " + path_name(path) + " " + gemm_kernel_name(fa, f32, fw, M, path) +
                 (pw.prepacked() && M >= 2 ? " prepacked W" : ""));
}

// Decode GEMV with the activation quantized in the call (gemv_quantized). args: N, K, weight
// format, activation format, path.
void BM_GemvQuantized(benchmark::State& state) {
  const size_t N = state.range(0), K = state.range(1);
  const MxFormat fw = MxFormat(state.range(2)), fa = MxFormat(state.range(3));
  const KernelPath path = KernelPath(state.range(4));
  const MxData W = make_mx(fw, N, K, 11);
  std::vector<float> x(K), y(N);
  std::mt19937 rng(12);
  std::normal_distribution<float> nd(0, 1);
  for (auto& v : x) v = nd(rng);
  const KernelConfig cfg{path, g_threads};
  for (auto _ : state) {
    gemv_quantized(x.data(), fa, W.view(), y.data(), {}, cfg);
    benchmark::ClobberMemory();
  }
  const double wgbs = double(W.codes.size() + W.scales.size()) * state.iterations() / 1e9;
  state.counters["W_GB/s"] = benchmark::Counter(wgbs, benchmark::Counter::kIsRate);
  state.counters["xread"] = benchmark::Counter(wgbs / g_read_gbs, benchmark::Counter::kIsRate);
  state.counters["GFLOP/s"] =
      benchmark::Counter(2.0 * N * K * state.iterations() / 1e9, benchmark::Counter::kIsRate);
  state.SetLabel(std::string("W=") + format_name(fw) + " A=FP32->" + format_name(fa) + " " +
                 path_name(path) + " " + gemm_kernel_name(fa, false, fw, 1, path));
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  std::vector<char*> args;
  for (int i = 0; i < argc; ++i) {
    if (std::string(argv[i]) == "--threads" && i + 1 < argc) {
      g_threads = std::atoi(argv[++i]);
    } else if (std::string(argv[i]) == "--quick") {
      quick = true;
    } else if (std::string(argv[i]) == "--no-prepack") {
      g_prepack = false;
    } else {
      args.push_back(argv[i]);
    }
  }
  if (g_threads < 1) {
    std::fprintf(stderr, "dmx-bench-kernels: --threads must be >= 1\n");
    return 2;
  }
  {
    std::vector<float> a(kBwBytes / 4, 1.0f), b(kBwBytes / 4, 0.0f);
    g_copy_gbs = measure(true, a, b);
    g_read_gbs = measure(false, a, b);
  }
  std::fprintf(stderr, "path %s, %d threads: copy %.2f GB/s, read %.2f GB/s\n",
               path_name(default_path()), g_threads, g_copy_gbs, g_read_gbs);
  benchmark::AddCustomContext("kernel_path", path_name(default_path()));
  benchmark::AddCustomContext("threads", std::to_string(g_threads));
  benchmark::AddCustomContext("copy_GBps", std::to_string(g_copy_gbs));
  benchmark::AddCustomContext("read_GBps", std::to_string(g_read_gbs));
  std::string avail;
  for (KernelPath p : kAllPaths)
    if (path_available(p)) avail += std::string(avail.empty() ? "" : ",") + path_name(p);
  benchmark::AddCustomContext("paths_available", avail);

  benchmark::RegisterBenchmark("Bandwidth", BM_Bandwidth)->Iterations(1);
  for (int f = 0; f < kNumFormats; ++f) {
    benchmark::RegisterBenchmark("Quantize", BM_Quantize)
        ->Arg(f)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark("Dequantize", BM_Dequantize)
        ->Arg(f)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
  }
  struct Shape {
    int64_t N, K;
  };  // a Linear layer: W is N x K
  const std::vector<Shape> shapes =
      quick ? std::vector<Shape>{{1536, 576}, {3072, 1024}}
            : std::vector<Shape>{
                  {14336, 4096}, {4096, 14336}, {8192, 2048}, {1536, 576}, {3072, 1024}};
  const int64_t E2M1 = int64_t(MxFormat::E2M1), FP32 = 6;
  // Every SIMD path the CPU has, each benchmark on each (ratios between paths from one run).
  std::vector<int64_t> paths;
  for (KernelPath p : {KernelPath::AVX2, KernelPath::AVX512})
    if (path_available(p)) paths.push_back(int64_t(p));
  for (const Shape& s : shapes) {
    for (int64_t M : {1, 8, 64, 512}) {
      if (M == 512 && quick && s.N > 2000) continue;
      for (int64_t path : paths) {
        // MXFP4 weights with MXFP4 and with FP32 activations, every shape and M.
        for (int64_t act : {E2M1, FP32})
          benchmark::RegisterBenchmark("Gemm", BM_Gemm)
              ->Args({M, s.N, s.K, E2M1, act, path})
              ->UseRealTime()
              ->Unit(benchmark::kMillisecond)
              ->MinTime(M >= 64 ? 0.5 : 0.2);
        // Every format (W and A in the same format, and W with FP32 activations at M = 1) at
        // M = 1 and 512 on the smaller shapes.
        if ((M == 1 || M == 512) && s.K <= 2048 && s.N <= 8192)
          for (int64_t f = 0; f < kNumFormats; ++f) {
            if (f != E2M1)
              benchmark::RegisterBenchmark("Gemm", BM_Gemm)
                  ->Args({M, s.N, s.K, f, f, path})
                  ->UseRealTime()
                  ->Unit(benchmark::kMillisecond)
                  ->MinTime(0.2);
            if (f != E2M1 && M == 1)
              benchmark::RegisterBenchmark("Gemm", BM_Gemm)
                  ->Args({M, s.N, s.K, f, FP32, path})
                  ->UseRealTime()
                  ->Unit(benchmark::kMillisecond)
                  ->MinTime(0.2);
          }
        // Decode with the activation quantized in the call.
        if (M == 1)
          for (int64_t f : {E2M1, int64_t(MxFormat::INT8)})
            benchmark::RegisterBenchmark("GemvQuantized", BM_GemvQuantized)
                ->Args({s.N, s.K, f, f, path})
                ->UseRealTime()
                ->Unit(benchmark::kMillisecond)
                ->MinTime(0.2);
      }
#ifdef DMX_BENCH_TORCH
      benchmark::RegisterBenchmark(
          "TorchMatmulFP32", [](benchmark::State& st) { dmx_bench::torch_matmul(st, g_threads); })
          ->Args({M, s.N, s.K})
          ->UseRealTime()
          ->Unit(benchmark::kMillisecond)
          ->MinTime(0.2);
#endif
    }
  }
  int ac = int(args.size());
  benchmark::Initialize(&ac, args.data());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
