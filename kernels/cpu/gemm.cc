// GEMM / GEMV drivers for MX x MX: the choice of kernel per format pair, M and path, and the
// scalar path (every block with the exact 128-bit step). The kernels of each kind of block sum are
// in gemm_int.cc, gemm_int_interleaved.cc and gemm_fp64.cc; FP32 / BF16 activations in
// gemm_mixed.cc.
#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "gemm_driver.h"

namespace dmx::kernels {
namespace {

using namespace detail;

void gemm_impl(const MxMatrixView& A, const MxMatrixView& W, detail::PackedInt* pre, float* C,
               size_t ldc, const KernelConfig& cfg) {
  check_shapes(A, W, ldc);
  const size_t M = A.rows, N = W.rows, K = W.cols, nb = K / kBlockSize;
  if (M == 0 || N == 0) return;
  if (K == 0) {
    for (size_t m = 0; m < M; ++m) std::fill(C + m * ldc, C + m * ldc + N, -0.0f);
    return;
  }
  const KernelPath path = usable_path(cfg.path);
  if (M == 1) {
    // AVX-512 without VBMI / DQ: the AVX2 GEMV kernels.
    const KernelPath gp = detail::gemv_path(path);
    if (detail::gemv_mx_available(A.format, W.format, gp)) {
      detail::gemv_mx(A, W, C, cfg.threads, gp);  // weights streamed once from the packed codes
      return;
    }
  }
  const BlockSumKind kind = block_sum_kind(A.format, W.format);
  const size_t tiles = (N + kTileRows - 1) / kTileRows;

  // A's codes unpacked once (both the SIMD decode and the exact corner cases read them).
  std::vector<uint8_t> Ac(M * K);
  for_row_ranges(M, K, cfg.threads, [&](size_t m0, size_t m1) {
    for (size_t m = m0; m < m1; ++m) {
      if (path == KernelPath::Scalar)
        detail::unpack_range(A.format, row_codes(A, m), 0, K, &Ac[m * K]);
      else
        unpack_codes_simd(A.format, row_codes(A, m), 0, K, &Ac[m * K]);
    }
  });

  if (kind != BlockSumKind::Int16 && path != KernelPath::Scalar && M >= 2) {
    gemm_f64_interleaved(A, W, Ac, C, ldc, cfg.threads, kind == BlockSumKind::Wide);
    return;
  }
  if (kind == BlockSumKind::Wide && path != KernelPath::Scalar) {
    gemm_wide(A, W, Ac, C, ldc, cfg.threads);
    return;
  }
  if (path == KernelPath::Scalar) {
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

  if (kind == BlockSumKind::Int16) {
    if (M >= 2)
      gemm_int_interleaved(A, W, Ac, C, ldc, cfg.threads, pre);
    else
      gemm_int(A, W, Ac, C, ldc, cfg.threads);
    return;
  }

  gemm_double_tiles(A, W, Ac, C, ldc, cfg.threads, path);
}

}  // namespace

void gemm(const MxMatrixView& A, const MxMatrixView& W, float* C, size_t ldc,
          const KernelConfig& cfg) {
  gemm_impl(A, W, nullptr, C, ldc, cfg);
}

PackedWeights pack_weights(const MxMatrixView& W, MxFormat a_format, const KernelConfig& cfg) {
  if (W.cols % kBlockSize != 0)
    throw std::invalid_argument("dmx::kernels::pack_weights: K = " + std::to_string(W.cols) +
                                " is not a multiple of 32 (pad with pad_rows)");
  PackedWeights pw;
  pw.view_ = W;
  pw.a_format_ = a_format;
  const KernelPath path = detail::usable_path(cfg.path);
  if (path == KernelPath::Scalar || block_sum_kind(a_format, W.format) != BlockSumKind::Int16 ||
      W.rows == 0 || W.cols == 0)
    return pw;  // no prepacked kernel: gemm() takes the per-call route
  pw.packed_ = detail::pack_int_weights(W, a_format, cfg.threads);
  return pw;
}

void gemm(const MxMatrixView& A, const PackedWeights& W, float* C, size_t ldc,
          const KernelConfig& cfg) {
  // The prepacked layout serves the A format it was packed for on a SIMD path at M >= 2; any
  // other call computes from the weights' view (the same bits either way).
  detail::PackedInt* pre = W.packed_ && A.format == W.a_format_ && A.rows >= 2 &&
                                   detail::usable_path(cfg.path) != KernelPath::Scalar
                               ? W.packed_.get()
                               : nullptr;
  gemm_impl(A, W.view_, pre, C, ldc, cfg);
}

}  // namespace dmx::kernels
