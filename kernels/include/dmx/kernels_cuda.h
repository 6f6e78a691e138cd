// dMX CUDA kernels (sm_90 by default): the operations of <dmx/kernels.h> over DEVICE pointers.
//
// Same formats, same canonical packed layout (codes row-major along K, scales in their own array,
// one E8M0 byte per 32 elements), same GEMM convention: C[M,N] = A[M,K] * W[N,K]^T, C row-major
// with leading dimension ldc. Every pointer below is a device pointer; `stream` is a cudaStream_t
// (nullptr = the legacy default stream) so this header needs no CUDA include. Calls are
// asynchronous on `stream`; invalid arguments and CUDA errors throw std::runtime_error (kernel
// faults surface at the next synchronizing call).
//
// Numeric contract:
//  - quantize / quantize_bf16 / dequantize / dequantize_bf16: bit-identical to golden
//    (dmx::quantize_row + pack_codes, unpack_codes + dequantize_row [+ fp32_to_bf16]), all options.
//  - gemm / gemv (exact mode, MX x MX, CUDA cores): C[m][n] == dmx::dot_blocked(A row m, W row n)
//    bit for bit: exact integer block sums (32/64-bit, 128-bit for E5M2 x E5M2), one RNE
//    rounding per block, FP32 adds in increasing block order starting from -0.
//  - gemm_bf16 / gemv_bf16 (fast mode, BF16 activations x MX weights). M <= 8: CUDA cores, each
//    weight decoded exactly to FP32 (element value x 2^scale), FP32 FMAs. M > 8: weights decoded to
//    BF16 in registers (element x 2^scale, RNE to BF16: exact unless the product leaves BF16's
//    normal range), fed to mma.sync m16n8k16 BF16 tensor cores with FP32 accumulation. Stated
//    bound against the exact dot of the same BF16 activations and MX weights (tested against
//    dmx::dot_exact with MX activations whose values are exact in BF16):
//        |C - exact| <= (K/16 + 40) * 2^-22 * sum_k |a_k * w_k| + 2^-126
//    (K/16 tensor-core k-steps or at most 32 + K/1024 + 6 FP32 roundings on the CUDA-core path,
//    each within 2^-22 relative of the running magnitude; FP32 subnormal underflow absolute term).
#pragma once

#include <dmx/golden.h>
#include <dmx/kernels.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>

namespace dmx::cuda {

using kernels::MxMatrixView;

// A CUDA device is usable by this process (a driver, a device, and a kernel image for it).
struct DeviceStatus {
  bool available = false;
  std::string description;  // "NVIDIA H200 (sm_90, 132 SMs)" or the reason there is none
};
DeviceStatus device_status();

// x: rows x cols FP32 / BF16 (cols a multiple of 32, rows contiguous) -> packed codes
// (rows * packed_bytes(f, cols)) and scales (rows * cols / 32).
void quantize(MxFormat f, const float* x, size_t rows, size_t cols, uint8_t* codes, uint8_t* scales,
              const QuantizeOptions& opt = {}, void* stream = nullptr);
void quantize_bf16(MxFormat f, const uint16_t* x, size_t rows, size_t cols, uint8_t* codes,
                   uint8_t* scales, const QuantizeOptions& opt = {}, void* stream = nullptr);
// m (device codes/scales) -> rows x cols FP32 / BF16.
void dequantize(const MxMatrixView& m, float* out, void* stream = nullptr);
void dequantize_bf16(const MxMatrixView& m, uint16_t* out, void* stream = nullptr);

// Exact mode, MX x MX (A.cols == W.cols). Uses a temporary device buffer for M > 1 (the operands'
// codes unpacked to a byte each).
void gemm(const MxMatrixView& A, const MxMatrixView& W, float* C, size_t ldc,
          void* stream = nullptr);
inline void gemv(const MxMatrixView& x, const MxMatrixView& W, float* y, void* stream = nullptr) {
  gemm(x, W, y, W.rows, stream);
}

// Fast mode: BF16 activations A (M x K row-major, lda >= K) x MX weights W (N x K).
void gemm_bf16(const uint16_t* A, size_t M, size_t lda, const MxMatrixView& W, float* C, size_t ldc,
               void* stream = nullptr);
inline void gemv_bf16(const uint16_t* x, const MxMatrixView& W, float* y, void* stream = nullptr) {
  gemm_bf16(x, 1, W.cols, W, y, W.rows, stream);
}

// The fast-mode error bound above for one output, given sum_k |a_k * w_k| and K.
inline double fast_mode_bound(double abs_dot, size_t K) {
  return (static_cast<double>(K) / 16.0 + 40.0) * std::ldexp(1.0, -22) * abs_dot +
         std::ldexp(1.0, -126);
}

}  // namespace dmx::cuda
