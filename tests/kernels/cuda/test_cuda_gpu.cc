// dmx::cuda on a GPU against golden: quantize / dequantize bit-identical, exact GEMV/GEMM equal to
// dot_blocked bit for bit, fast mode within the stated bound of dot_exact. Without a usable GPU
// the program prints why and exits 77, which ctest reports as SKIPPED (SKIP_RETURN_CODE).
#include <cuda_runtime.h>
#include <dmx/golden.h>
#include <dmx/kernels_cuda.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <stdexcept>
#include <vector>

namespace dmx::cuda {
namespace {

constexpr uint32_t kSeed = 0x6b0dface;

template <typename T>
struct DeviceArray {
  T* p = nullptr;
  size_t n = 0;
  explicit DeviceArray(size_t count) : n(count) {
    if (cudaMalloc(&p, std::max<size_t>(count, 1) * sizeof(T)) != cudaSuccess)
      throw std::runtime_error("cudaMalloc failed");
  }
  explicit DeviceArray(const std::vector<T>& h) : DeviceArray(h.size()) { upload(h); }
  ~DeviceArray() { cudaFree(p); }
  DeviceArray(const DeviceArray&) = delete;
  void upload(const std::vector<T>& h) {
    if (cudaMemcpy(p, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice) != cudaSuccess)
      throw std::runtime_error("upload failed");
  }
  std::vector<T> download() const {
    std::vector<T> h(n);
    if (cudaDeviceSynchronize() != cudaSuccess ||
        cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost) != cudaSuccess)
      throw std::runtime_error(std::string("download failed: ") +
                               cudaGetErrorString(cudaGetLastError()));
    return h;
  }
};

// An MX matrix on the host: unpacked codes (for golden), packed codes and scales (for the GPU).
struct HostMx {
  MxFormat f;
  size_t rows, cols;
  std::vector<uint8_t> unpacked, packed, scales;
  MxVector vec(size_t r) const {
    return {f, scales.data() + r * cols / kBlockSize, unpacked.data() + r * cols};
  }
};

HostMx random_mx(MxFormat f, size_t rows, size_t cols, std::mt19937& rng, bool finite_only,
                 int scale_lo, int scale_hi, int nan_scale_one_in) {
  HostMx m{f, rows, cols, std::vector<uint8_t>(rows * cols), {}, {}};
  const int n = 1 << format_bits(f);
  for (auto& c : m.unpacked) {
    do {
      c = static_cast<uint8_t>(rng() % n);
    } while (finite_only &&
             (decode_element_exact(f, c).is_nan || decode_element_exact(f, c).is_inf));
  }
  m.scales.resize(rows * cols / kBlockSize);
  for (auto& s : m.scales)
    s = (nan_scale_one_in && rng() % nan_scale_one_in == 0)
            ? kScaleNaN
            : static_cast<uint8_t>(scale_lo + rng() % (scale_hi - scale_lo + 1));
  const size_t rb = packed_bytes(f, cols);
  m.packed.assign(rows * rb, 0);
  for (size_t r = 0; r < rows; ++r) pack_codes(f, &m.unpacked[r * cols], cols, &m.packed[r * rb]);
  return m;
}

struct DeviceMx {
  DeviceArray<uint8_t> codes, scales;
  MxFormat f;
  size_t rows, cols;
  explicit DeviceMx(const HostMx& h)
      : codes(h.packed), scales(h.scales), f(h.f), rows(h.rows), cols(h.cols) {}
  MxMatrixView view() const { return {f, rows, cols, codes.p, scales.p}; }
};

std::vector<float> random_values(size_t n, std::mt19937& rng, bool edges) {
  std::vector<float> v(n);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (size_t b = 0; b < n / kBlockSize; ++b) {
    const float mag = std::ldexp(1.0f, static_cast<int>(rng() % 80) - 40);
    for (int i = 0; i < kBlockSize; ++i) v[b * kBlockSize + i] = nd(rng) * mag;
  }
  if (edges) {
    const float special[] = {0.0f,
                             -0.0f,
                             std::numeric_limits<float>::denorm_min(),
                             -1e-40f,
                             std::numeric_limits<float>::max(),
                             std::numeric_limits<float>::infinity(),
                             -std::numeric_limits<float>::infinity(),
                             std::numeric_limits<float>::quiet_NaN(),
                             448.0f,
                             464.0f};
    for (size_t i = 0; i < n / 97; ++i) v[rng() % n] = special[rng() % 10];
  }
  return v;
}

bool same_bits(float a, float b) { return fp32_bits(a) == fp32_bits(b); }

TEST(CudaGpu, QuantizeMatchesGoldenForEveryFormatAndOption) {
  std::mt19937 rng(kSeed);
  const size_t rows = 37, cols = 320;
  const std::vector<float> x = random_values(rows * cols, rng, true);
  std::vector<uint16_t> xb(x.size());
  for (size_t i = 0; i < x.size(); ++i) xb[i] = fp32_to_bf16(x[i]);
  std::vector<float> xb_f(x.size());
  for (size_t i = 0; i < x.size(); ++i) xb_f[i] = bf16_to_fp32(xb[i]);
  DeviceArray<float> dx(x);
  DeviceArray<uint16_t> dxb(xb);
  for (MxFormat f : kAllFormats)
    for (int rule = 0; rule < 4; ++rule)
      for (int ov = 0; ov < 2; ++ov)
        for (int nf = 0; nf < 2; ++nf) {
          QuantizeOptions opt;
          opt.scale_rule = static_cast<ScaleRule>(rule);
          opt.overflow = static_cast<Overflow>(ov);
          opt.non_finite = static_cast<NonFinitePolicy>(nf);
          opt.int8_allow_minus128 = (rule + ov) % 2;
          const size_t rb = packed_bytes(f, cols);
          for (int bf = 0; bf < 2; ++bf) {
            const std::vector<float>& src = bf ? xb_f : x;
            std::vector<uint8_t> want_codes(rows * rb), want_scales(rows * cols / 32),
                unpacked(cols);
            for (size_t r = 0; r < rows; ++r) {
              quantize_row(f, &src[r * cols], cols, &want_scales[r * cols / 32], unpacked.data(),
                           opt);
              pack_codes(f, unpacked.data(), cols, &want_codes[r * rb]);
            }
            DeviceArray<uint8_t> codes(rows * rb), scales(rows * cols / 32);
            if (bf)
              quantize_bf16(f, dxb.p, rows, cols, codes.p, scales.p, opt);
            else
              quantize(f, dx.p, rows, cols, codes.p, scales.p, opt);
            ASSERT_EQ(scales.download(), want_scales)
                << format_name(f) << " rule " << rule << " ov " << ov << " nf " << nf << " bf16 "
                << bf;
            ASSERT_EQ(codes.download(), want_codes) << format_name(f) << " rule " << rule << " ov "
                                                    << ov << " nf " << nf << " bf16 " << bf;
          }
        }
}

// Many CTAs and a ragged last CTA (grid-stride loop), default options.
TEST(CudaGpu, QuantizeLargeMatchesGolden) {
  std::mt19937 rng(kSeed + 1);
  const size_t rows = 3, cols = 32 * 4099;
  const std::vector<float> x = random_values(rows * cols, rng, false);
  DeviceArray<float> dx(x);
  for (MxFormat f : kAllFormats) {
    const size_t rb = packed_bytes(f, cols);
    std::vector<uint8_t> want_codes(rows * rb), want_scales(rows * cols / 32), unpacked(cols);
    for (size_t r = 0; r < rows; ++r) {
      quantize_row(f, &x[r * cols], cols, &want_scales[r * cols / 32], unpacked.data());
      pack_codes(f, unpacked.data(), cols, &want_codes[r * rb]);
    }
    DeviceArray<uint8_t> codes(rows * rb), scales(rows * cols / 32);
    quantize(f, dx.p, rows, cols, codes.p, scales.p);
    ASSERT_EQ(scales.download(), want_scales) << format_name(f);
    ASSERT_EQ(codes.download(), want_codes) << format_name(f);
  }
}

TEST(CudaGpu, DequantizeMatchesGolden) {
  std::mt19937 rng(kSeed + 2);
  for (MxFormat f : kAllFormats) {
    const HostMx h = random_mx(f, 29, 32 * 300, rng, false, 0, 254, 50);
    DeviceMx d(h);
    DeviceArray<float> out(h.rows * h.cols);
    DeviceArray<uint16_t> outb(h.rows * h.cols);
    cuda::dequantize(d.view(), out.p);
    cuda::dequantize_bf16(d.view(), outb.p);
    const std::vector<float> got = out.download();
    const std::vector<uint16_t> gotb = outb.download();
    std::vector<float> want(h.cols);
    for (size_t r = 0; r < h.rows; ++r) {
      dequantize_row(f, &h.scales[r * h.cols / 32], &h.unpacked[r * h.cols], h.cols, want.data());
      for (size_t i = 0; i < h.cols; ++i) {
        ASSERT_TRUE(same_bits(got[r * h.cols + i], want[i]))
            << format_name(f) << " row " << r << " col " << i << " got " << got[r * h.cols + i]
            << " want " << want[i];
        ASSERT_EQ(gotb[r * h.cols + i], fp32_to_bf16(want[i])) << format_name(f);
      }
    }
  }
}

void check_exact_gemm(MxFormat fa, MxFormat fw, size_t M, size_t N, size_t K, size_t ldc,
                      std::mt19937& rng) {
  const HostMx a = random_mx(fa, M, K, rng, false, 100, 150, 200);
  const HostMx w = random_mx(fw, N, K, rng, false, 100, 150, 200);
  DeviceMx da(a), dw(w);
  DeviceArray<float> c(M * ldc);
  cuda::gemm(da.view(), dw.view(), c.p, ldc);
  const std::vector<float> got = c.download();
  for (size_t m = 0; m < M; ++m)
    for (size_t n = 0; n < N; ++n) {
      const float want = dot_blocked(a.vec(m), w.vec(n), K);
      const float g = got[m * ldc + n];
      const bool ok = same_bits(g, want) || (std::isnan(g) && std::isnan(want));
      ASSERT_TRUE(ok) << format_name(fa) << " x " << format_name(fw) << " M " << M << " N " << N
                      << " K " << K << " at (" << m << "," << n << ") got " << g << " want " << want
                      << " seed " << kSeed;
    }
}

TEST(CudaGpu, ExactGemvAndGemmEqualDotBlockedForEveryFormatPair) {
  std::mt19937 rng(kSeed + 3);
  for (MxFormat fa : kAllFormats)
    for (MxFormat fw : kAllFormats) {
      check_exact_gemm(fa, fw, 1, 37, 32 * 40, 37, rng);  // GEMV path, two lane chunks
      check_exact_gemm(fa, fw, 5, 70, 32 * 3, 72, rng);   // GEMM path, ragged tiles, ldc > N
    }
}

TEST(CudaGpu, ExactGemmLargerShapes) {
  std::mt19937 rng(kSeed + 4);
  check_exact_gemm(MxFormat::E4M3, MxFormat::E2M1, 1, 300, 4096, 300, rng);
  check_exact_gemm(MxFormat::E5M2, MxFormat::E5M2, 1, 65, 2048, 65, rng);
  check_exact_gemm(MxFormat::E4M3, MxFormat::E2M1, 130, 140, 512, 140, rng);
  check_exact_gemm(MxFormat::INT8, MxFormat::E3M2, 67, 129, 256, 131, rng);
}

// Fast mode: activations are MX E4M3 values made BF16 (exact), so dot_exact of the MX operands is
// the exact dot of what the kernel multiplies.
void check_fast_gemm(MxFormat fw, size_t M, size_t N, size_t K, size_t lda, std::mt19937& rng) {
  const HostMx a = random_mx(MxFormat::E4M3, M, K, rng, true, 118, 134, 0);
  const HostMx w = random_mx(fw, N, K, rng, true, 118, 134, 0);
  std::vector<uint16_t> ab(M * lda, 0);
  std::vector<float> row(K);
  for (size_t m = 0; m < M; ++m) {
    dequantize_row(a.f, &a.scales[m * K / 32], &a.unpacked[m * K], K, row.data());
    for (size_t k = 0; k < K; ++k) {
      ab[m * lda + k] = fp32_to_bf16(row[k]);
      ASSERT_EQ(bf16_to_fp32(ab[m * lda + k]), row[k]);  // exact in BF16
    }
  }
  std::vector<float> wrow(K);
  std::vector<std::vector<float>> wvals(N);
  for (size_t n = 0; n < N; ++n) {
    dequantize_row(fw, &w.scales[n * K / 32], &w.unpacked[n * K], K, wrow.data());
    wvals[n] = wrow;
  }
  DeviceArray<uint16_t> da(ab);
  DeviceMx dw(w);
  DeviceArray<float> c(M * N);
  cuda::gemm_bf16(da.p, M, lda, dw.view(), c.p, N);
  const std::vector<float> got = c.download();
  double worst = 0;
  for (size_t m = 0; m < M; ++m) {
    for (size_t k = 0; k < K; ++k) row[k] = bf16_to_fp32(ab[m * lda + k]);
    for (size_t n = 0; n < N; ++n) {
      const float exact = dot_exact(a.vec(m), w.vec(n), K);
      double abs_dot = 0;
      for (size_t k = 0; k < K; ++k) abs_dot += std::fabs(double(row[k]) * wvals[n][k]);
      const double err = std::fabs(double(got[m * N + n]) - double(exact));
      const double bound = fast_mode_bound(abs_dot, K);
      ASSERT_LE(err, bound) << format_name(fw) << " M " << M << " N " << N << " K " << K << " at ("
                            << m << "," << n << ") got " << got[m * N + n] << " exact " << exact
                            << " seed " << kSeed;
      if (abs_dot > 0) worst = std::max(worst, err / abs_dot);
    }
  }
  std::printf("  fast %s M=%zu N=%zu K=%zu: worst |err|/sum|a*w| = %.3g (bound %.3g)\n",
              format_name(fw), M, N, K, worst, fast_mode_bound(1.0, K));
}

TEST(CudaGpu, FastGemvAndGemmWithinStatedBoundOfDotExact) {
  std::mt19937 rng(kSeed + 5);
  for (MxFormat fw : kAllFormats) {
    check_fast_gemm(fw, 1, 75, 32 * 37, 32 * 37, rng);  // CUDA-core path
    check_fast_gemm(fw, 8, 40, 320, 320 + 3, rng);      // CUDA-core, unaligned rows
    check_fast_gemm(fw, 9, 130, 320, 320, rng);         // tensor cores, ragged tiles
    check_fast_gemm(fw, 200, 260, 256, 256 + 5, rng);   // tensor cores, scalar A loads
  }
  check_fast_gemm(MxFormat::E2M1, 256, 256, 4096, 4096, rng);  // long K
}

TEST(CudaGpu, InvalidArgumentsThrow) {
  DeviceArray<float> x(64);
  DeviceArray<uint8_t> codes(64), scales(2);
  EXPECT_THROW(quantize(MxFormat::E4M3, x.p, 1, 33, codes.p, scales.p), std::runtime_error);
  const MxMatrixView a{MxFormat::E4M3, 1, 64, codes.p, scales.p};
  const MxMatrixView w{MxFormat::E4M3, 1, 32, codes.p, scales.p};
  EXPECT_THROW(cuda::gemm(a, w, x.p, 1), std::runtime_error);
}

}  // namespace
}  // namespace dmx::cuda

int main(int argc, char** argv) {
  const dmx::cuda::DeviceStatus st = dmx::cuda::device_status();
  if (!st.available) {
    std::printf("SKIPPED: %s\n", st.description.c_str());
    return 77;
  }
  std::printf("device: %s\n", st.description.c_str());
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
