// dMX kernels: optimized MX quantize / dequantize / GEMV / GEMM (CPU today; CUDA under cuda/).
//
// Data layout is the project's canonical packed layout (golden/README.md): row-major along K, per
// row the element codes block after block (FP8/INT8 a byte each, FP4 two per byte with the even
// element in the low nibble, FP6 four in three bytes), and the E8M0 scales in a separate array,
// one per 32-element block. Every operation takes plain pointers + shapes + formats so a CUDA
// implementation can offer the same functions over device pointers.
//
// GEMM convention (a Linear layer): C[M,N] = A[M,K] * W[N,K]^T, A = activations, W = weights, both
// row-major along K, C row-major with leading dimension ldc (>= N).
//
// Numeric contract:
//  - MX x MX: C[m][n] == dmx::dot_blocked(A row m, W row n) bit for bit, on every path.
//  - FP32/BF16 activations x MX weights ("mixed", fast mode): weights dequantized exactly as
//    dmx::dequantize_row does, products fused-multiply-added into 8 interleaved FP32 lanes (lane l
//    takes k = l mod 8, blocks in increasing k), the lanes summed pairwise at the end. Error bound
//    vs. the exact dot of the same FP32 values, rounded once (tested):
//        |C - exact| <= gamma(K/8 + 4) * sum_k |a_k * w_k| + K * 2^-149,  gamma(n) = n u/(1 - n u),
//    with u = 2^-24. The scalar and AVX2 paths use the same order and agree bit for bit.
#pragma once

#include <dmx/golden.h>

#include <cstddef>
#include <cstdint>
#include <memory>

namespace dmx::kernels {

// ---- Paths and threads ------------------------------------------------------------------------
enum class KernelPath : uint8_t { Scalar = 0, AVX2 = 1, AVX512 = 2 };
inline constexpr KernelPath kAllPaths[] = {KernelPath::Scalar, KernelPath::AVX2,
                                           KernelPath::AVX512};
const char* path_name(KernelPath p);  // "scalar", "avx2", "avx512"
// The CPU has every instruction the path uses (AVX2: avx2+fma; AVX512: avx512 f/bw/vl/vnni).
bool path_available(KernelPath p);
// Best available path, or the one forced by env DMX_KERNEL_PATH=scalar|avx2|avx512 (a forced path
// the CPU lacks falls back to the best available one, with a warning on stderr).
KernelPath default_path();
// Threads: env DMX_THREADS if set (> 0), else std::thread::hardware_concurrency().
int default_threads();

struct KernelConfig {
  KernelPath path = default_path();
  int threads = default_threads();  // threads over output rows (weight rows N); 1 = caller only
};

// ---- Matrices ---------------------------------------------------------------------------------
// A rows x cols MX matrix in the canonical packed layout; cols a multiple of 32. Row r's codes
// start at codes + r * packed_row_bytes(format, cols), its scales at scales + r * cols / 32.
struct MxMatrixView {
  MxFormat format;
  size_t rows;
  size_t cols;
  const uint8_t* codes;
  const uint8_t* scales;
};
inline size_t packed_row_bytes(MxFormat f, size_t cols) { return packed_bytes(f, cols); }
inline size_t blocks_per_row(size_t cols) { return cols / kBlockSize; }

// Padding helper: copies a rows x cols FP32 (or BF16) matrix into rows x padded_length(cols) with
// zeros appended to each row (zeros change neither the scale of a block nor any dot product).
void pad_rows(const float* in, size_t rows, size_t cols, float* out);
void pad_rows_bf16(const uint16_t* in, size_t rows, size_t cols, uint16_t* out);

// ---- Quantize / dequantize --------------------------------------------------------------------
// x: rows x cols (cols a multiple of 32) -> packed codes (rows * packed_row_bytes) and scales
// (rows * cols / 32).
// Bit-identical to dmx::quantize_row + dmx::pack_codes for every option; the default options
// (FLOOR, SAT, NAN_SCALE) run vectorized, other knobs take a per-block route.
void quantize(MxFormat f, const float* x, size_t rows, size_t cols, uint8_t* codes, uint8_t* scales,
              const QuantizeOptions& opt = {}, const KernelConfig& cfg = {});
void quantize_bf16(MxFormat f, const uint16_t* x, size_t rows, size_t cols, uint8_t* codes,
                   uint8_t* scales, const QuantizeOptions& opt = {}, const KernelConfig& cfg = {});
// Bit-identical to dmx::unpack_codes + dmx::dequantize_row (BF16: then dmx::fp32_to_bf16).
void dequantize(const MxMatrixView& m, float* out, const KernelConfig& cfg = {});
void dequantize_bf16(const MxMatrixView& m, uint16_t* out, const KernelConfig& cfg = {});

// ---- GEMM / GEMV ------------------------------------------------------------------------------
// MX x MX, bit-exact to dot_blocked. A.cols == W.cols.
void gemm(const MxMatrixView& A, const MxMatrixView& W, float* C, size_t ldc,
          const KernelConfig& cfg = {});
// Weights prepacked once for repeated MX x MX GEMMs (a Linear layer's W): the interleaved integer
// layout of the Int16 pairs' M >= 2 kernel (values in quanta, per-column scale exponents and the
// int8 kernel's run corrections), built for one activation format. gemm(A, packed) gives the same
// bits as gemm(A, W); calls the layout does not serve (another A format, M = 1, the scalar path,
// pairs without an integer kernel) compute from the view, as gemm(A, W) does. The object keeps
// the view, not a copy: W's codes and scales must outlive it and stay unchanged. Size: about one
// byte per weight (int8 kernel: pairs of E2M1, E2M3, INT8 but INT8 x INT8) or two (int16 kernel:
// E3M2, INT8 x INT8), K rounded up to whole 32-block chunks, plus per-block exponents /
// corrections.
namespace detail {
struct PackedInt;
}
class PackedWeights {
 public:
  const MxMatrixView& view() const { return view_; }
  MxFormat a_format() const { return a_format_; }
  bool prepacked() const { return packed_ != nullptr; }  // false: every call takes the view

 private:
  friend PackedWeights pack_weights(const MxMatrixView&, MxFormat, const KernelConfig&);
  friend void gemm(const MxMatrixView&, const PackedWeights&, float*, size_t, const KernelConfig&);
  MxMatrixView view_{};
  MxFormat a_format_{};
  std::shared_ptr<detail::PackedInt> packed_;
};
PackedWeights pack_weights(const MxMatrixView& W, MxFormat a_format, const KernelConfig& cfg = {});
void gemm(const MxMatrixView& A, const PackedWeights& W, float* C, size_t ldc,
          const KernelConfig& cfg = {});
// FP32 / BF16 activations (M x K, row-major, lda >= K) x MX weights, fast mode (bound above).
void gemm_f32(const float* A, size_t M, size_t lda, const MxMatrixView& W, float* C, size_t ldc,
              const KernelConfig& cfg = {});
void gemm_bf16(const uint16_t* A, size_t M, size_t lda, const MxMatrixView& W, float* C, size_t ldc,
               const KernelConfig& cfg = {});
// GEMV = GEMM with M = 1: y[N] = W * x.
inline void gemv(const MxMatrixView& x, const MxMatrixView& W, float* y,
                 const KernelConfig& cfg = {}) {
  gemm(x, W, y, W.rows, cfg);
}
inline void gemv_f32(const float* x, const MxMatrixView& W, float* y,
                     const KernelConfig& cfg = {}) {
  gemm_f32(x, 1, W.cols, W, y, W.rows, cfg);
}
// Decode GEMV with the activation quantized in the same call: y = W * Q(x), Q(x) = quantize(
// a_format, x) with `opt` (K = W.cols elements). Bit-identical to quantize() then gemv(); x is
// quantized once per call (at M = 1 every weight tile reuses it) into a per-call buffer of K
// codes, which the GEMV then prepares for its route without leaving the caches.
void gemv_quantized(const float* x, MxFormat a_format, const MxMatrixView& W, float* y,
                    const QuantizeOptions& opt = {}, const KernelConfig& cfg = {});

// How a format pair's exact block sums are computed (documented choice, reported by tests/bench):
//   Int16   both formats' magnitudes are small integers (E2M1, E2M3, INT8, E3M2), block sum
//           < 2^24: u8 x s8 products (vpmaddubsw) where W fits s8, A + max|A| fits u8 and the
//           pair sums stay below 2^15, else int16 products (vpmaddwd); the block result is the
//           exact sum times 2^(sa+sb-254+qa+qb), rounded once (FP64 for extreme or NaN scales)
//   Double  the block sum fits 53 bits: exact FP64 products and sums (FMA)
//   Wide    more (E5M2 x E5M2, E5M2 x E4M3): FP64 for the blocks whose exponent span keeps the
//           sum within 53 bits (checked per block), exact 128-bit integer block sums otherwise
enum class BlockSumKind : uint8_t { Int16, Double, Wide };
// The kernel gemm() (a_format MX, or FP32 activations with a_fp32) runs for M activation rows on
// `path` after per-kernel dispatch, as a short name for reports: "gemv-i8-vnni", "gemv-i16-vnni",
// "gemv-i16s-vnni", "gemv-f64", "gemv-i16", "gemv-fp4-int8", "gemv-f32" (M = 1 kernels) or the
// block-sum kind / "mixed" of the general kernels.
const char* gemm_kernel_name(MxFormat a_format, bool a_fp32, MxFormat w_format, size_t M,
                             KernelPath path);
BlockSumKind block_sum_kind(MxFormat a, MxFormat b);
const char* block_sum_kind_name(BlockSumKind k);

}  // namespace dmx::kernels
