// GEMM / GEMV with FP32 or BF16 activations and MX weights (the mixed contract: 8-lane FP32
// partial sums per output, reduced in a fixed order): GEMV from the packed rows, GEMM on
// dequantized weight tiles.
#include <algorithm>
#include <cmath>
#include <vector>

#include "gemm_driver.h"

namespace dmx::kernels {

using detail::check_shapes;
using detail::FormatTable;
using detail::kTileRows;
using detail::row_codes;
using detail::table;
using detail::unpack_codes_simd;

void gemm_f32(const float* A, size_t M, size_t lda, const MxMatrixView& W, float* C, size_t ldc,
              const KernelConfig& cfg) {
  const size_t N = W.rows, K = W.cols, nb = K / kBlockSize;
  if (K % kBlockSize != 0)
    throw std::invalid_argument("dmx::kernels::gemm_f32: K = " + std::to_string(K) +
                                " is not a multiple of 32 (pad with pad_rows)");
  if (lda < K || ldc < N) throw std::invalid_argument("dmx::kernels::gemm_f32: lda < K or ldc < N");
  if (M == 0 || N == 0) return;
  const KernelPath path = detail::usable_path(cfg.path);
  const FormatTable& tw = table(W.format);
  const size_t tiles = (N + kTileRows - 1) / kTileRows;
  const auto finish = [&](const float* lanes, size_t m, size_t n) {
    const float* v = lanes;
    const float s0 = v[0] + v[4], s1 = v[1] + v[5], s2 = v[2] + v[6], s3 = v[3] + v[7];
    C[m * ldc + n] = (s0 + s2) + (s1 + s3);
  };
  if (M == 1 && path == KernelPath::AVX512 && detail::cpu_has_avx512_vbmi()) {
    detail::gemv_f32_avx512(A, W, C, cfg.threads);  // every format, two rows per vector
    return;
  }
  if (M == 1 && path != KernelPath::Scalar && format_bits(W.format) != 6) {
    // GEMV: the packed weights streamed once, decoded in registers (same lanes, same order).
    constexpr size_t kTilesPerTask = 4;  // 32 rows a task
    const size_t rb = packed_row_bytes(W.format, K);
    detail::parallel_for(
        (tiles + kTilesPerTask - 1) / kTilesPerTask, cfg.threads, [&](size_t task) {
          for (size_t t = task * kTilesPerTask; t < std::min(tiles, (task + 1) * kTilesPerTask);
               ++t) {
            const size_t n0 = t * kTileRows;
            const uint8_t* rows[kTileRows];
            const uint8_t* sc[kTileRows];
            for (int r = 0; r < kTileRows; ++r) {
              const size_t n = std::min(n0 + r, N - 1);  // rows past N repeat the last, discarded
              rows[r] = W.codes + n * rb;
              sc[r] = W.scales + n * nb;
            }
            alignas(32) float lanes[kTileRows * 8];
            std::fill(lanes, lanes + kTileRows * 8, -0.0f);
            // The next tile's rows (contiguous) are prefetched linearly alongside.
            const uint8_t* pf = n0 + kTileRows < N ? W.codes + (n0 + kTileRows) * rb : nullptr;
            const size_t pf_bytes = pf ? std::min<size_t>(kTileRows, N - n0 - kTileRows) * rb : 0;
            detail::mixed_gemv_rows8_avx2(W.format, A, rows, sc, nb, lanes, pf, pf_bytes);
            for (int r = 0; r < kTileRows && n0 + r < N; ++r) finish(lanes + r * 8, 0, n0 + r);
          }
        });
    return;
  }
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
        if (path == KernelPath::Scalar)
          detail::unpack_range(W.format, row_codes(W, row), k0, n, wc.data());
        else  // FP6: the AVX2 unpacker
          unpack_codes_simd(W.format, row_codes(W, row), k0, n, wc.data());
        for (size_t b = 0; b < n / kBlockSize; ++b) {  // unit * scale, as dequantize_row
          const float sc = decode_scale(W.scales[row * nb + k0 / kBlockSize + b]);
          for (size_t i = b * kBlockSize; i < (b + 1) * kBlockSize; ++i)
            dst[i] = tw.unit[wc[i]] * sc;
        }
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
      for (int r = 0; r < kTileRows && n0 + r < N; ++r)
        finish(&lanes[(m * kTileRows + r) * 8], m, n0 + r);
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
