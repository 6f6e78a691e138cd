// FP32-activation GEMVs: gemm_f32 with M = 1 on the AVX-512 path (the weight rows streamed once
// from their packed codes in tiles of 8 (mixed_gemv_rows8_avx512, two rows per 512-bit vector),
// the mixed contract's 8 lanes per row finished as in gemm_f32), and gemv_quantized (x quantized
// once, then the MX x MX GEMV).
#include <algorithm>
#include <vector>

#include "internal.h"

namespace dmx::kernels::detail {

void gemv_f32_avx512(const float* x, const MxMatrixView& W, float* y, int threads) {
  constexpr int kRows = 8;
  constexpr size_t kTilesPerTask = 4;
  const size_t N = W.rows, K = W.cols, nb = K / kBlockSize;
  const size_t rb = packed_row_bytes(W.format, K), tiles = (N + kRows - 1) / kRows;
  const FormatTable& tw = table(W.format);
  alignas(64) float tab[32] = {};
  for (int c = 0; c < 32; ++c) tab[c] = tw.unit[format_bits(W.format) == 4 ? c % 16 : c];
  parallel_for((tiles + kTilesPerTask - 1) / kTilesPerTask, threads, [&](size_t task) {
    std::vector<uint8_t> wsc(nb * kRows + 8);
    for (size_t t = task * kTilesPerTask; t < std::min(tiles, (task + 1) * kTilesPerTask); ++t) {
      const size_t n0 = t * kRows;
      MixedGemvArgs args{};
      const uint8_t* sc[kRows];
      for (int r = 0; r < kRows; ++r) {
        const size_t n = std::min(n0 + r, N - 1);  // rows past N repeat the last, discarded
        args.rows[r] = W.codes + n * rb;
        sc[r] = W.scales + n * nb;
      }
      int smin, smax;
      transpose_scales8_avx512(sc, nb, wsc.data(), &smin, &smax);
      alignas(64) float lanes[kRows * 8];
      args.f = W.format;
      args.a = x;
      args.wsc = wsc.data();
      args.nb = nb;
      args.table = tab;
      args.lanes = lanes;
      if (n0 + kRows < N) {  // the next tile's rows are contiguous
        args.pf = W.codes + (n0 + kRows) * rb;
        args.pf_bytes = std::min<size_t>(kRows, N - n0 - kRows) * rb;
      }
      mixed_gemv_rows8_avx512(args);
      for (int r = 0; r < kRows && n0 + r < N; ++r) {
        const float* v = lanes + r * 8;
        const float s0 = v[0] + v[4], s1 = v[1] + v[5], s2 = v[2] + v[6], s3 = v[3] + v[7];
        y[n0 + r] = (s0 + s2) + (s1 + s3);
      }
    }
  });
}

}  // namespace dmx::kernels::detail

namespace dmx::kernels {

void gemv_quantized(const float* x, MxFormat a_format, const MxMatrixView& W, float* y,
                    const QuantizeOptions& opt, const KernelConfig& cfg) {
  const size_t K = W.cols;
  std::vector<uint8_t> codes(packed_row_bytes(a_format, K)), scales(K / kBlockSize);
  // One row: quantized on the caller (a pool wake-up costs more than K elements).
  quantize(a_format, x, 1, K, codes.data(), scales.data(), opt, {cfg.path, 1});
  const MxMatrixView A{a_format, 1, K, codes.data(), scales.data()};
  gemv(A, W, y, cfg);
}

}  // namespace dmx::kernels
