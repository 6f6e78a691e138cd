// GEMM / GEMV drivers: operand decoding, tiling over weight rows, threads, path dispatch. The
// scalar path computes every block with the exact 128-bit block step.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "internal.h"

namespace dmx::kernels {
namespace {

using detail::FormatTable;
using detail::table;

constexpr int kTileRows = 8;  // weight rows per tile (one SIMD lane each in the epilogue)

KernelPath usable(KernelPath p) { return path_available(p) ? p : default_path(); }

void check_shapes(const MxMatrixView& A, const MxMatrixView& W, size_t ldc) {
  if (A.cols != W.cols)
    throw std::invalid_argument("dmx::kernels::gemm: A.cols (" + std::to_string(A.cols) +
                                ") != W.cols (" + std::to_string(W.cols) + ")");
  if (W.cols % kBlockSize != 0)
    throw std::invalid_argument("dmx::kernels::gemm: K = " + std::to_string(W.cols) +
                                " is not a multiple of 32 (pad with pad_rows)");
  if (ldc < W.rows) throw std::invalid_argument("dmx::kernels::gemm: ldc < N");
}

const uint8_t* row_codes(const MxMatrixView& m, size_t r) {
  return m.codes + r * packed_row_bytes(m.format, m.cols);
}

}  // namespace

void gemm(const MxMatrixView& A, const MxMatrixView& W, float* C, size_t ldc,
          const KernelConfig& cfg) {
  check_shapes(A, W, ldc);
  const size_t M = A.rows, N = W.rows, K = W.cols, nb = K / kBlockSize;
  if (M == 0 || N == 0) return;
  if (K == 0) {
    for (size_t m = 0; m < M; ++m) std::fill(C + m * ldc, C + m * ldc + N, -0.0f);
    return;
  }
  const KernelPath path = usable(cfg.path);
  const BlockSumKind kind = block_sum_kind(A.format, W.format);
  const size_t tiles = (N + kTileRows - 1) / kTileRows;

  // A's codes unpacked once (both the SIMD decode and the exact corner cases read them).
  std::vector<uint8_t> Ac(M * K);
  for (size_t m = 0; m < M; ++m) detail::unpack_range(A.format, row_codes(A, m), 0, K, &Ac[m * K]);

  if (path == KernelPath::Scalar || kind == BlockSumKind::Wide) {
    detail::parallel_for(tiles, cfg.threads, [&](size_t t) {
      std::vector<uint8_t> wc(K);
      for (size_t n = t * kTileRows; n < std::min(N, (t + 1) * kTileRows); ++n) {
        detail::unpack_range(W.format, row_codes(W, n), 0, K, wc.data());
        for (size_t m = 0; m < M; ++m) {
          float acc = -0.0f;  // -0 + r_0 == r_0: the contract's C
          for (size_t j = 0; j < nb; ++j)
            acc += detail::exact_block(A.format, A.scales[m * nb + j], &Ac[m * K + j * kBlockSize],
                                       W.format, W.scales[n * nb + j], &wc[j * kBlockSize]);
          C[m * ldc + n] = acc;
        }
      }
    });
    return;
  }

  const bool int16 = kind == BlockSumKind::Int16;
  const FormatTable& ta = table(A.format);
  const FormatTable& tw = table(W.format);
  const int qa = int16 ? format_info(A.format).quantum_exp : 0;
  const int qw = int16 ? format_info(W.format).quantum_exp : 0;
  const size_t esize = int16 ? sizeof(int16_t) : sizeof(double);
  // A decoded: int16 magnitudes in quantum units, or exact element values as double.
  std::vector<unsigned char> Adec(M * K * esize);
  std::vector<double> afac(M * nb);
  for (size_t m = 0; m < M; ++m) {
    for (size_t k = 0; k < K; ++k) {
      const uint8_t c = Ac[m * K + k];
      if (int16)
        reinterpret_cast<int16_t*>(Adec.data())[m * K + k] = ta.q16[c];
      else
        reinterpret_cast<double*>(Adec.data())[m * K + k] = ta.unit_d[c];
    }
    for (size_t j = 0; j < nb; ++j)
      afac[m * nb + j] = detail::scale_factor_d(A.scales[m * nb + j], qa);
  }

  const size_t chunk = int16 ? 32 : 8;  // blocks per chunk: a 16 KiB decoded weight tile
  detail::parallel_for(tiles, cfg.threads, [&](size_t t) {
    const size_t n0 = t * kTileRows;
    std::vector<uint8_t> wc(kTileRows * chunk * kBlockSize);
    std::vector<unsigned char> wt(kTileRows * chunk * kBlockSize * esize);
    std::vector<double> wfac(kTileRows * chunk);
    std::vector<float> acc(M * kTileRows, -0.0f);
    size_t j0 = 0;
    const std::function<float(size_t, int, size_t)> fix = [&](size_t m, int r, size_t j) {
      const size_t n = n0 + r;
      if (n >= N) return 0.0f;
      return detail::exact_block(A.format, A.scales[m * nb + j], &Ac[m * K + j * kBlockSize],
                                 W.format, W.scales[n * nb + j],
                                 &wc[(r * chunk + (j - j0)) * kBlockSize]);
    };
    for (; j0 < nb; j0 += chunk) {
      const size_t j1 = std::min(nb, j0 + chunk), nj = j1 - j0;
      for (int r = 0; r < kTileRows; ++r) {
        const size_t n = n0 + r;
        uint8_t* dst = &wc[r * chunk * kBlockSize];
        if (n < N)
          detail::unpack_range(W.format, row_codes(W, n), j0 * kBlockSize, nj * kBlockSize, dst);
        else
          std::fill(dst, dst + nj * kBlockSize, uint8_t{0});
        for (size_t j = j0; j < j1; ++j) {
          wfac[(j - j0) * kTileRows + r] =
              n < N ? detail::scale_factor_d(W.scales[n * nb + j], qw) : 0.0;
          const uint8_t* src = dst + (j - j0) * kBlockSize;
          const size_t o = ((j - j0) * kTileRows + r) * kBlockSize;
          if (int16 ? detail::decode_block_int16_avx2(W.format, src,
                                                      reinterpret_cast<int16_t*>(wt.data()) + o)
                    : detail::decode_block_double_avx2(W.format, src,
                                                       reinterpret_cast<double*>(wt.data()) + o))
            continue;  // the AVX-512 path needs AVX2 too, so this decoder always applies
          for (int i = 0; i < kBlockSize; ++i) {
            if (int16)
              reinterpret_cast<int16_t*>(wt.data())[o + i] = tw.q16[src[i]];
            else
              reinterpret_cast<double*>(wt.data())[o + i] = tw.unit_d[src[i]];
          }
        }
      }
      detail::TileArgs args{M,         nb,          j0,          j1,         K,   Adec.data(),
                            wt.data(), afac.data(), wfac.data(), acc.data(), &fix};
      if (path == KernelPath::AVX512)
        int16 ? detail::int16_tile_avx512(args) : detail::double_tile_avx512(args);
      else
        int16 ? detail::int16_tile_avx2(args) : detail::double_tile_avx2(args);
    }
    for (size_t m = 0; m < M; ++m)
      for (int r = 0; r < kTileRows && n0 + r < N; ++r)
        C[m * ldc + n0 + r] = acc[m * kTileRows + r];
  });
}

void gemm_f32(const float* A, size_t M, size_t lda, const MxMatrixView& W, float* C, size_t ldc,
              const KernelConfig& cfg) {
  const size_t N = W.rows, K = W.cols, nb = K / kBlockSize;
  if (K % kBlockSize != 0)
    throw std::invalid_argument("dmx::kernels::gemm_f32: K = " + std::to_string(K) +
                                " is not a multiple of 32 (pad with pad_rows)");
  if (lda < K || ldc < N) throw std::invalid_argument("dmx::kernels::gemm_f32: lda < K or ldc < N");
  if (M == 0 || N == 0) return;
  const KernelPath path = usable(cfg.path);
  const FormatTable& tw = table(W.format);
  const size_t tiles = (N + kTileRows - 1) / kTileRows;
  constexpr size_t kc = 512;  // K columns per chunk: a 16 KiB dequantized weight tile
  detail::parallel_for(tiles, cfg.threads, [&](size_t t) {
    const size_t n0 = t * kTileRows;
    std::vector<uint8_t> wc(kc);
    std::vector<float> wf(kTileRows * kc);
    std::vector<float> lanes(M * kTileRows * 8, -0.0f);
    for (size_t k0 = 0; k0 < K; k0 += kc) {
      const size_t n = std::min(kc, K - k0);
      for (int r = 0; r < kTileRows; ++r) {
        float* dst = &wf[r * kc];
        if (n0 + r >= N) {
          std::fill(dst, dst + n, 0.0f);
          continue;
        }
        const size_t row = n0 + r;
        if (path != KernelPath::Scalar && format_bits(W.format) != 6) {
          detail::dequantize_row_avx2(W.format, row_codes(W, row) + packed_bytes(W.format, k0),
                                      W.scales + row * nb + k0 / kBlockSize, n, dst);
          continue;
        }
        detail::unpack_range(W.format, row_codes(W, row), k0, n, wc.data());
        for (size_t i = 0; i < n; ++i)
          dst[i] = tw.unit[wc[i]] * decode_scale(W.scales[row * nb + (k0 + i) / kBlockSize]);
      }
      if (path == KernelPath::Scalar) {
        for (size_t m = 0; m < M; ++m)
          for (int r = 0; r < kTileRows; ++r) {
            float* ln = &lanes[(m * kTileRows + r) * 8];
            for (size_t k = 0; k < n; ++k)
              ln[k % 8] = std::fma(A[m * lda + k0 + k], wf[r * kc + k], ln[k % 8]);
          }
      } else {
        // The AVX-512 path shares this kernel: the 8-lane order is part of the mixed contract.
        detail::mixed_tile_avx2(M, A, lda, k0, n, wf.data(), kc, lanes.data());
      }
    }
    for (size_t m = 0; m < M; ++m)
      for (int r = 0; r < kTileRows && n0 + r < N; ++r) {
        const float* v = &lanes[(m * kTileRows + r) * 8];
        const float s0 = v[0] + v[4], s1 = v[1] + v[5], s2 = v[2] + v[6], s3 = v[3] + v[7];
        C[m * ldc + n0 + r] = (s0 + s2) + (s1 + s3);
      }
  });
}

void gemm_bf16(const uint16_t* A, size_t M, size_t lda, const MxMatrixView& W, float* C, size_t ldc,
               const KernelConfig& cfg) {
  // BF16 -> FP32 is exact; the FP32 kernel then applies unchanged.
  std::vector<float> Af(M * W.cols);
  for (size_t m = 0; m < M; ++m)
    for (size_t k = 0; k < W.cols; ++k) Af[m * W.cols + k] = bf16_to_fp32(A[m * lda + k]);
  gemm_f32(Af.data(), M, W.cols, W, C, ldc, cfg);
}

}  // namespace dmx::kernels
