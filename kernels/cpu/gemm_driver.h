// The GEMM drivers' shared pieces (kernels/cpu/gemm*.cc): shape checks, row access, the row-range
// threading of operand decoding, and the entry points of each kind of block sum.
#pragma once

#include <algorithm>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "internal.h"

namespace dmx::kernels::detail {

constexpr int kTileRows = 8;  // weight rows per tile (one SIMD lane each in the epilogue)

inline void check_shapes(const MxMatrixView& A, const MxMatrixView& W, size_t ldc) {
  if (A.cols != W.cols)
    throw std::invalid_argument("dmx::kernels::gemm: A.cols (" + std::to_string(A.cols) +
                                ") != W.cols (" + std::to_string(W.cols) + ")");
  if (W.cols % kBlockSize != 0)
    throw std::invalid_argument("dmx::kernels::gemm: K = " + std::to_string(W.cols) +
                                " is not a multiple of 32 (pad with pad_rows)");
  if (ldc < W.rows) throw std::invalid_argument("dmx::kernels::gemm: ldc < N");
}

inline const uint8_t* row_codes(const MxMatrixView& m, size_t r) {
  return m.codes + r * packed_row_bytes(m.format, m.cols);
}

// unpack_range on a SIMD path: FP6 with the AVX2 unpacker (the others are byte copies / cheap).
inline void unpack_codes_simd(MxFormat f, const uint8_t* row, size_t k0, size_t n, uint8_t* out) {
  if (format_bits(f) == 6)
    detail::unpack_fp6_avx2(row + k0 / kBlockSize * 24, n / kBlockSize, out);
  else
    detail::unpack_range(f, row, k0, n, out);
}

// fn(m0, m1) over ranges of rows [0, M) (multiples of 4 rows, but for the last), on the pool when
// the operand is large enough to pay for waking it (M * K >= 2^14 elements), else on the caller.
template <class F>
void for_row_ranges(size_t M, size_t K, int threads, const F& fn) {
  if (threads <= 1 || M < 8 || M * K < (size_t(1) << 14)) {
    fn(size_t(0), M);
    return;
  }
  const size_t groups = (M + 3) / 4;
  const size_t tasks = std::min(groups, size_t(4) * size_t(threads));
  const size_t per = (groups + tasks - 1) / tasks;  // row groups per task
  detail::parallel_for((groups + per - 1) / per, threads, [&](size_t t) {
    fn(std::min(M, t * per * 4), std::min(M, (t + 1) * per * 4));
  });
}

// 2^e as FP32 (e >= -149 and <= 127), from the bits.
inline float pow2_f32(int e) {
  const uint32_t b = e >= -126 ? uint32_t(e + 127) << 23 : uint32_t(1) << (e + 149);
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}

// ---- Entry points per kind of block sum (A's codes unpacked once into Ac, M x K) -------------
// gemm_int.cc: Int16 block sums, M = 1 tiles (int8 / int16 kernels).
void gemm_int(const MxMatrixView& A, const MxMatrixView& W, const std::vector<uint8_t>& Ac,
              float* C, size_t ldc, int threads);
// gemm_int_interleaved.cc: Int16 block sums, M >= 2 (weights packed per call or prepacked).
struct PackedInt;
void gemm_int_interleaved(const MxMatrixView& A, const MxMatrixView& W,
                          const std::vector<uint8_t>& Ac, float* C, size_t ldc, int threads,
                          PackedInt* pre);
std::shared_ptr<PackedInt> pack_int_weights(const MxMatrixView& W, MxFormat a_format, int threads);
// gemm_fp64.cc: FP64 block sums (M >= 2 interleaved; M = 1 tiles) and the Wide pairs.
void gemm_f64_interleaved(const MxMatrixView& A, const MxMatrixView& W,
                          const std::vector<uint8_t>& Ac, float* C, size_t ldc, int threads,
                          bool wide);
void gemm_double_tiles(const MxMatrixView& A, const MxMatrixView& W, const std::vector<uint8_t>& Ac,
                       float* C, size_t ldc, int threads, KernelPath path);
void gemm_wide(const MxMatrixView& A, const MxMatrixView& W, const std::vector<uint8_t>& Ac,
               float* C, size_t ldc, int threads);

}  // namespace dmx::kernels::detail
