// dmx-bench-cuda: GPU benchmark of the dMX CUDA kernels, written as one JSON file.
//
// Measures, in one run: device-to-device copy bandwidth (cudaMemcpyAsync, read + write bytes),
// quantize (BF16/FP32 -> MX) as a fraction of it, GEMV at M = 1 with MXFP4 weights (exact mode
// with MXFP8 activations, fast mode with BF16 activations) as a fraction of it, and the fast
// GEMM at M = 4096 against cuBLAS BF16 (cublasGemmEx, FP32 accumulate and output) on the same
// shape. Weight buffers rotate over more than 4x the L2 size so GEMV reads come from HBM. Every
// benchmarked output is spot-checked against golden (exact: bit-equal to dot_blocked; fast:
// within fast_mode_bound of dot_exact). Plain C++ (no JSON/CLI library) so it also builds on a
// bare GPU machine with nvcc alone.
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <dmx/golden.h>
#include <dmx/kernels_cuda.h>
#include <dmx/util.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using namespace dmx;

void ck(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}
void ckb(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS)
    throw std::runtime_error(std::string(what) + ": cuBLAS status " + std::to_string(int(s)));
}

struct Dev {
  void* p = nullptr;
  explicit Dev(size_t bytes) { ck(cudaMalloc(&p, std::max<size_t>(bytes, 256)), "cudaMalloc"); }
  ~Dev() { cudaFree(p); }
  Dev(const Dev&) = delete;
  template <typename T>
  T* as() const {
    return static_cast<T*>(p);
  }
};

// Median time in microseconds of `iters` runs of f (after 3 warm-up runs), CUDA events.
double time_us(const std::function<void(int)>& f, int iters) {
  for (int i = 0; i < 3; ++i) f(i);
  ck(cudaDeviceSynchronize(), "warm-up");
  cudaEvent_t a, b;
  ck(cudaEventCreate(&a), "event");
  ck(cudaEventCreate(&b), "event");
  std::vector<double> t;
  for (int i = 0; i < iters; ++i) {
    ck(cudaEventRecord(a), "record");
    f(i);
    ck(cudaEventRecord(b), "record");
    ck(cudaEventSynchronize(b), "sync");
    float ms = 0;
    ck(cudaEventElapsedTime(&ms, a, b), "elapsed");
    t.push_back(ms * 1e3);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// Tiny JSON writer for flat records.
struct Json {
  std::ostringstream s;
  bool first = true;
  void key(const std::string& k) {
    s << (first ? "" : ",") << "\"" << k << "\":";
    first = false;
  }
  void num(const std::string& k, double v) {
    key(k);
    if (std::isfinite(v))
      s << v;
    else
      s << "null";
  }
  void str(const std::string& k, const std::string& v) {
    key(k);
    s << "\"" << v << "\"";
  }
  void boolean(const std::string& k, bool v) {
    key(k);
    s << (v ? "true" : "false");
  }
  void raw(const std::string& k, const std::string& v) {
    key(k);
    s << v;
  }
  std::string obj() const { return "{" + s.str() + "}"; }
};

// Random MX matrix generated on the host (finite codes, scales around 2^0), uploaded.
struct MxData {
  MxFormat f;
  size_t rows, cols;
  std::vector<uint8_t> packed, scales;
};
MxData random_mx_host(MxFormat f, size_t rows, size_t cols, std::mt19937& rng) {
  MxData m{f, rows, cols, std::vector<uint8_t>(rows * packed_bytes(f, cols)),
           std::vector<uint8_t>(rows * cols / kBlockSize)};
  std::vector<uint8_t> codes(cols), finite;
  for (int c = 0; c < (1 << format_bits(f)); ++c)
    if (!decode_element_exact(f, uint8_t(c)).is_nan && !decode_element_exact(f, uint8_t(c)).is_inf)
      finite.push_back(uint8_t(c));
  for (size_t r = 0; r < rows; ++r) {
    for (auto& c : codes) c = finite[rng() % finite.size()];
    pack_codes(f, codes.data(), cols, &m.packed[r * packed_bytes(f, cols)]);
  }
  for (auto& s : m.scales) s = static_cast<uint8_t>(120 + rng() % 10);
  return m;
}
std::vector<uint8_t> unpack_row(const MxData& m, size_t r) {
  std::vector<uint8_t> c(m.cols);
  unpack_codes(m.f, &m.packed[r * packed_bytes(m.f, m.cols)], m.cols, c.data());
  return c;
}

template <typename T>
std::vector<T> download(const void* p, size_t n) {
  std::vector<T> h(n);
  ck(cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost), "download");
  return h;
}

struct Options {
  std::string out = "cuda_results.json";
  bool quick = false;
};

int run(const Options& opt) {
  const cuda::DeviceStatus st = cuda::device_status();
  if (!st.available) {
    std::fprintf(stderr, "dmx-bench-cuda: %s\n", st.description.c_str());
    return 1;
  }
  int dev = 0;
  cudaDeviceProp prop{};
  ck(cudaGetDevice(&dev), "device");
  ck(cudaGetDeviceProperties(&prop, dev), "properties");
  std::fprintf(stderr, "device: %s, L2 %d MiB\n", st.description.c_str(), prop.l2CacheSize >> 20);
  std::vector<std::string> results;
  std::mt19937 rng(20261128);
  const int iters = opt.quick ? 10 : 30;
  bool all_checks_ok = true;

  // ---- copy bandwidth
  const size_t copy_bytes = size_t(1) << (opt.quick ? 28 : 30);
  Dev csrc(copy_bytes), cdst(copy_bytes);
  ck(cudaMemset(csrc.p, 1, copy_bytes), "memset");
  const double copy_us = time_us(
      [&](int) {
        ck(cudaMemcpyAsync(cdst.p, csrc.p, copy_bytes, cudaMemcpyDeviceToDevice), "copy");
      },
      iters);
  const double copy_gbps = 2.0 * copy_bytes / copy_us * 1e-3;  // read + write
  std::fprintf(stderr, "copy: %.1f GB/s (read + write)\n", copy_gbps);
  {
    Json j;
    j.str("name", "d2d_copy");
    j.num("bytes", double(copy_bytes));
    j.num("time_us", copy_us);
    j.num("GBps", copy_gbps);
    results.push_back(j.obj());
  }

  // ---- quantize: rows x cols BF16 / FP32 -> MX, bytes = input + codes + scales
  {
    const size_t rows = opt.quick ? 4096 : 8192, cols = 8192, n = rows * cols;
    std::vector<uint16_t> hb(n);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    for (auto& v : hb) v = fp32_to_bf16(nd(rng));
    Dev xb(n * 2), xf(n * 4), codes(n), scales(n / 32);
    ck(cudaMemcpy(xb.p, hb.data(), n * 2, cudaMemcpyHostToDevice), "upload");
    std::vector<float> hf(n);
    for (size_t i = 0; i < n; ++i) hf[i] = bf16_to_fp32(hb[i]);
    ck(cudaMemcpy(xf.p, hf.data(), n * 4, cudaMemcpyHostToDevice), "upload");
    for (MxFormat f : {MxFormat::E2M1, MxFormat::E4M3, MxFormat::E2M3, MxFormat::INT8})
      for (int in_bf16 = 1; in_bf16 >= 0; --in_bf16) {
        auto op = [&](int) {
          if (in_bf16)
            cuda::quantize_bf16(f, xb.as<uint16_t>(), rows, cols, codes.as<uint8_t>(),
                                scales.as<uint8_t>());
          else
            cuda::quantize(f, xf.as<float>(), rows, cols, codes.as<uint8_t>(),
                           scales.as<uint8_t>());
        };
        const double us = time_us(op, iters);
        const double bytes = double(n) * (in_bf16 ? 2 : 4) + double(packed_bytes(f, n)) + n / 32;
        // check the first 64 rows against golden
        const size_t check_rows = 64, rb = packed_bytes(f, cols);
        const auto got_c = download<uint8_t>(codes.p, check_rows * rb);
        const auto got_s = download<uint8_t>(scales.p, check_rows * cols / 32);
        std::vector<uint8_t> want_c(check_rows * rb), want_s(check_rows * cols / 32), un(cols);
        for (size_t r = 0; r < check_rows; ++r) {
          quantize_row(f, &hf[r * cols], cols, &want_s[r * cols / 32], un.data());
          pack_codes(f, un.data(), cols, &want_c[r * rb]);
        }
        const bool ok = got_c == want_c && got_s == want_s;
        all_checks_ok &= ok;
        Json j;
        j.str("name",
              std::string("quantize_") + (in_bf16 ? "bf16" : "fp32") + "_to_" + format_name(f));
        j.num("rows", double(rows));
        j.num("cols", double(cols));
        j.num("time_us", us);
        j.num("GBps", bytes / us * 1e-3);
        j.num("fraction_of_copy", bytes / us * 1e-3 / copy_gbps);
        j.num("target_fraction", 0.80);
        j.boolean("meets_target", bytes / us * 1e-3 / copy_gbps >= 0.80);
        j.boolean("golden_check_ok", ok);
        results.push_back(j.obj());
        std::fprintf(stderr, "quantize %s->%s: %.1f GB/s (%.0f%% of copy) check %s\n",
                     in_bf16 ? "bf16" : "fp32", format_name(f), bytes / us * 1e-3,
                     100 * bytes / us * 1e-3 / copy_gbps, ok ? "ok" : "FAILED");
      }
  }

  // ---- GEMV, M = 1, MXFP4 weights
  struct Shape {
    size_t K, N;
  };
  const std::vector<Shape> gemv_shapes = {
      {4096, 14336}, {8192, 28672}, {14336, 4096}, {28672, 8192}};
  for (const Shape& sh : gemv_shapes) {
    const size_t K = sh.K, N = sh.N;
    const MxFormat fw = MxFormat::E2M1;
    const size_t wbytes = N * packed_bytes(fw, K), sbytes = N * K / 32;
    const size_t copies = std::max<size_t>(
        1, std::min<size_t>(16, (4 * size_t(prop.l2CacheSize)) / (wbytes + sbytes) + 1));
    const MxData w = random_mx_host(fw, N, K, rng);
    std::vector<std::unique_ptr<Dev>> wc, ws;
    for (size_t c = 0; c < copies; ++c) {
      wc.push_back(std::make_unique<Dev>(wbytes));
      ws.push_back(std::make_unique<Dev>(sbytes));
      ck(cudaMemcpy(wc.back()->p, w.packed.data(), wbytes, cudaMemcpyHostToDevice), "upload");
      ck(cudaMemcpy(ws.back()->p, w.scales.data(), sbytes, cudaMemcpyHostToDevice), "upload");
    }
    const MxData x = random_mx_host(MxFormat::E4M3, 1, K, rng);
    Dev xc(K), xs(K / 32), xb(K * 2), y(N * 4);
    ck(cudaMemcpy(xc.p, x.packed.data(), K, cudaMemcpyHostToDevice), "upload");
    ck(cudaMemcpy(xs.p, x.scales.data(), K / 32, cudaMemcpyHostToDevice), "upload");
    std::vector<float> xf(K);
    const std::vector<uint8_t> xun = unpack_row(x, 0);
    dequantize_row(x.f, x.scales.data(), xun.data(), K, xf.data());
    std::vector<uint16_t> xbh(K);
    for (size_t k = 0; k < K; ++k) xbh[k] = fp32_to_bf16(xf[k]);  // exact: E4M3 values
    ck(cudaMemcpy(xb.p, xbh.data(), K * 2, cudaMemcpyHostToDevice), "upload");
    auto wview = [&](int i) {
      return cuda::MxMatrixView{fw, N, K, wc[i % copies]->as<uint8_t>(),
                                ws[i % copies]->as<uint8_t>()};
    };
    const cuda::MxMatrixView xview{MxFormat::E4M3, 1, K, xc.as<uint8_t>(), xs.as<uint8_t>()};
    for (int fast = 0; fast < 2; ++fast) {
      auto op = [&](int i) {
        if (fast)
          cuda::gemv_bf16(xb.as<uint16_t>(), wview(i), y.as<float>());
        else
          cuda::gemv(xview, wview(i), y.as<float>());
      };
      const double us = time_us(op, iters);
      op(0);  // output of copy 0 for the check
      const auto got = download<float>(y.p, N);
      bool ok = true;
      const std::vector<uint8_t> xcodes = xun;
      for (size_t n = 0; n < N; n += std::max<size_t>(1, N / 61)) {
        const std::vector<uint8_t> wr = unpack_row(w, n);
        const MxVector a{x.f, x.scales.data(), xcodes.data()};
        const MxVector b{fw, &w.scales[n * K / 32], wr.data()};
        if (!fast) {
          ok &= fp32_bits(got[n]) == fp32_bits(dot_blocked(a, b, K));
        } else {
          std::vector<float> wf(K);
          dequantize_row(fw, &w.scales[n * K / 32], wr.data(), K, wf.data());
          double absdot = 0;
          for (size_t k = 0; k < K; ++k) absdot += std::fabs(double(xf[k]) * wf[k]);
          ok &= std::fabs(double(got[n]) - dot_exact(a, b, K)) <= cuda::fast_mode_bound(absdot, K);
        }
      }
      all_checks_ok &= ok;
      const double bytes = double(wbytes + sbytes) + (fast ? 2.0 * K : K + K / 32.0) + 4.0 * N;
      Json j;
      j.str("name", std::string("gemv_") + (fast ? "fast_bf16" : "exact_mxfp8") + "_x_mxfp4");
      j.num("M", 1);
      j.num("K", double(K));
      j.num("N", double(N));
      j.num("weight_copies_rotated", double(copies));
      j.num("time_us", us);
      j.num("GBps", bytes / us * 1e-3);
      j.num("fraction_of_copy", bytes / us * 1e-3 / copy_gbps);
      j.num("target_fraction", 0.75);
      j.boolean("meets_target", bytes / us * 1e-3 / copy_gbps >= 0.75);
      j.boolean("golden_check_ok", ok);
      results.push_back(j.obj());
      std::fprintf(stderr, "gemv %s K=%zu N=%zu: %.1f us, %.1f GB/s (%.0f%% of copy) check %s\n",
                   fast ? "fast" : "exact", K, N, us, bytes / us * 1e-3,
                   100 * bytes / us * 1e-3 / copy_gbps, ok ? "ok" : "FAILED");
    }
  }

  // ---- GEMM, M = 4096, fast mode vs cuBLAS BF16
  {
    const size_t M = 4096, K = 4096, N = opt.quick ? 4096 : 14336;
    cublasHandle_t h;
    ckb(cublasCreate(&h), "cublasCreate");
    for (MxFormat fw : {MxFormat::E2M1, MxFormat::E4M3}) {
      const MxData w = random_mx_host(fw, N, K, rng);
      const MxData a = random_mx_host(MxFormat::E4M3, M, K, rng);
      std::vector<uint16_t> ab(M * K), wb(N * K);
      std::vector<float> row(K);
      for (size_t m = 0; m < M; ++m) {
        const auto c = unpack_row(a, m);
        dequantize_row(a.f, &a.scales[m * K / 32], c.data(), K, row.data());
        for (size_t k = 0; k < K; ++k) ab[m * K + k] = fp32_to_bf16(row[k]);
      }
      for (size_t n = 0; n < N; ++n) {
        const auto c = unpack_row(w, n);
        dequantize_row(fw, &w.scales[n * K / 32], c.data(), K, row.data());
        for (size_t k = 0; k < K; ++k) wb[n * K + k] = fp32_to_bf16(row[k]);
      }
      Dev dab(M * K * 2), dwb(N * K * 2), dwc(w.packed.size()), dws(w.scales.size()), dc(M * N * 4),
          dref(M * N * 4);
      ck(cudaMemcpy(dab.p, ab.data(), M * K * 2, cudaMemcpyHostToDevice), "upload");
      ck(cudaMemcpy(dwb.p, wb.data(), N * K * 2, cudaMemcpyHostToDevice), "upload");
      ck(cudaMemcpy(dwc.p, w.packed.data(), w.packed.size(), cudaMemcpyHostToDevice), "upload");
      ck(cudaMemcpy(dws.p, w.scales.data(), w.scales.size(), cudaMemcpyHostToDevice), "upload");
      const cuda::MxMatrixView wv{fw, N, K, dwc.as<uint8_t>(), dws.as<uint8_t>()};
      const double ours = time_us(
          [&](int) { cuda::gemm_bf16(dab.as<uint16_t>(), M, K, wv, dc.as<float>(), N); }, iters);
      const float alpha = 1.0f, beta = 0.0f;
      // Row-major C[M,N] = A[M,K] W[N,K]^T is column-major C^T = W * A^T: op(W) = T, op(A) = N.
      const double cublas = time_us(
          [&](int) {
            ckb(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, int(N), int(M), int(K), &alpha, dwb.p,
                             CUDA_R_16BF, int(K), dab.p, CUDA_R_16BF, int(K), &beta, dref.p,
                             CUDA_R_32F, int(N), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                "cublasGemmEx");
          },
          iters);
      const auto got = download<float>(dc.p, M * N);
      const auto ref = download<float>(dref.p, M * N);
      bool ok = true;
      double max_rel_vs_cublas = 0;
      for (int s = 0; s < 200; ++s) {
        const size_t m = rng() % M, n = rng() % N;
        const auto ac = unpack_row(a, m), wc = unpack_row(w, n);
        const MxVector va{a.f, &a.scales[m * K / 32], ac.data()},
            vw{fw, &w.scales[n * K / 32], wc.data()};
        double absdot = 0;
        for (size_t k = 0; k < K; ++k)
          absdot += std::fabs(double(bf16_to_fp32(ab[m * K + k])) * bf16_to_fp32(wb[n * K + k]));
        const double exact = dot_exact(va, vw, K);
        ok &= std::fabs(got[m * N + n] - exact) <= cuda::fast_mode_bound(absdot, K);
        if (absdot > 0)
          max_rel_vs_cublas = std::max(max_rel_vs_cublas,
                                       std::fabs(double(got[m * N + n]) - ref[m * N + n]) / absdot);
      }
      all_checks_ok &= ok;
      const double flops = 2.0 * M * N * K;
      Json j;
      j.str("name", std::string("gemm_fast_bf16_x_mx") + format_name(fw));
      j.num("M", double(M));
      j.num("N", double(N));
      j.num("K", double(K));
      j.num("time_us", ours);
      j.num("TFLOPs", flops / ours * 1e-6);
      j.num("cublas_bf16_time_us", cublas);
      j.num("cublas_bf16_TFLOPs", flops / cublas * 1e-6);
      j.num("ratio_vs_cublas", cublas / ours);
      j.num("max_abs_diff_vs_cublas_over_sum_abs", max_rel_vs_cublas);
      j.boolean("golden_check_ok", ok);
      results.push_back(j.obj());
      std::fprintf(stderr,
                   "gemm fast x %s M=%zu N=%zu K=%zu: %.1f TFLOP/s, cuBLAS BF16 %.1f TFLOP/s, "
                   "ratio %.2f, check %s\n",
                   format_name(fw), M, N, K, flops / ours * 1e-6, flops / cublas * 1e-6,
                   cublas / ours, ok ? "ok" : "FAILED");
    }
    cublasDestroy(h);
  }

  // ---- exact GEMM (informational), M = 512
  {
    const size_t M = 512, N = 4096, K = 4096;
    const MxData a = random_mx_host(MxFormat::E4M3, M, K, rng);
    const MxData w = random_mx_host(MxFormat::E2M1, N, K, rng);
    Dev ac(a.packed.size()), as(a.scales.size()), wc(w.packed.size()), ws(w.scales.size()),
        c(M * N * 4);
    ck(cudaMemcpy(ac.p, a.packed.data(), a.packed.size(), cudaMemcpyHostToDevice), "upload");
    ck(cudaMemcpy(as.p, a.scales.data(), a.scales.size(), cudaMemcpyHostToDevice), "upload");
    ck(cudaMemcpy(wc.p, w.packed.data(), w.packed.size(), cudaMemcpyHostToDevice), "upload");
    ck(cudaMemcpy(ws.p, w.scales.data(), w.scales.size(), cudaMemcpyHostToDevice), "upload");
    const cuda::MxMatrixView av{a.f, M, K, ac.as<uint8_t>(), as.as<uint8_t>()};
    const cuda::MxMatrixView wv{w.f, N, K, wc.as<uint8_t>(), ws.as<uint8_t>()};
    const double us = time_us([&](int) { cuda::gemm(av, wv, c.as<float>(), N); }, 5);
    const auto got = download<float>(c.p, M * N);
    bool ok = true;
    for (int s = 0; s < 100; ++s) {
      const size_t m = rng() % M, n = rng() % N;
      const auto ar = unpack_row(a, m), wr = unpack_row(w, n);
      ok &= fp32_bits(got[m * N + n]) ==
            fp32_bits(dot_blocked({a.f, &a.scales[m * K / 32], ar.data()},
                                  {w.f, &w.scales[n * K / 32], wr.data()}, K));
    }
    all_checks_ok &= ok;
    Json j;
    j.str("name", "gemm_exact_mxfp8_x_mxfp4");
    j.num("M", double(M));
    j.num("N", double(N));
    j.num("K", double(K));
    j.num("time_us", us);
    j.num("TFLOPs", 2.0 * M * N * K / us * 1e-6);
    j.boolean("golden_check_ok", ok);
    results.push_back(j.obj());
    std::fprintf(stderr, "gemm exact M=%zu N=%zu K=%zu: %.1f TFLOP/s check %s\n", M, N, K,
                 2.0 * M * N * K / us * 1e-6, ok ? "ok" : "FAILED");
  }

  Json top;
  top.str("device", st.description);
  top.num("copy_GBps", copy_gbps);
  top.boolean("all_golden_checks_ok", all_checks_ok);
  std::string arr = "[";
  for (size_t i = 0; i < results.size(); ++i) arr += (i ? ",\n" : "\n") + results[i];
  top.raw("results", arr + "\n]");
  try {
    dmx::write_file_atomic(opt.out, top.obj() + "\n");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dmx-bench-cuda: error: %s\n", e.what());
    return 1;
  }
  std::fprintf(stderr, "wrote %s\n", opt.out.c_str());
  return all_checks_ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::printf(
          "usage: dmx-bench-cuda [--out FILE] [--quick]\n"
          "  Benchmarks the dMX CUDA kernels on the current GPU (copy bandwidth, quantize, GEMV\n"
          "  M=1 with MXFP4 weights, GEMM M=4096 vs cuBLAS BF16) and writes FILE (JSON,\n"
          "  default cuda_results.json). --quick: smaller sizes, fewer iterations.\n"
          "  Exit: 0 ok, 1 failure (no GPU, CUDA error, a golden spot check failed), 2 usage.\n");
      return 0;
    } else if (a == "--quick") {
      opt.quick = true;
    } else if (a == "--out" && i + 1 < argc) {
      opt.out = argv[++i];
    } else {
      std::fprintf(stderr, "dmx-bench-cuda: unknown argument '%s' (see --help)\n", a.c_str());
      return 2;
    }
  }
  try {
    return run(opt);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dmx-bench-cuda: %s\n", e.what());
    return 1;
  }
}
