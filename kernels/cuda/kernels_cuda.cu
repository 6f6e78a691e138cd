// dMX CUDA kernels: quantize / dequantize, exact MX x MX GEMV/GEMM, fast BF16 x MX GEMV/GEMM
// (mma.sync BF16 tensor cores). The per-element and per-block arithmetic lives in mx_device.h,
// shared with the host tests; this file holds the data movement and the launches.
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <dmx/kernels_cuda.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>

#include "mx_device.h"

namespace dmx::cuda {
namespace {

using namespace detail;
static_assert(kBlock == kBlockSize, "mx_device.h block size");

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    throw std::runtime_error(std::string("dmx::cuda: ") + what + ": " + cudaGetErrorString(e));
}
void fail(const std::string& what) { throw std::runtime_error("dmx::cuda: " + what); }
cudaStream_t as_stream(void* s) { return static_cast<cudaStream_t>(s); }
bool aligned(const void* p, size_t a) { return reinterpret_cast<uintptr_t>(p) % a == 0; }

// Decode tables for every format in constant memory (copied to shared memory by the kernels).
__constant__ DecodeTable c_decode[kNumFormats];
__constant__ float c_value[kNumFormats][256];

// Builds the tables on the host from golden (values) and the MX core's decode, and
// uploads them once per process (to the current device).
void ensure_tables() {
  static std::once_flag once;
  std::call_once(once, [] {
    static DecodeTable dec[kNumFormats];
    static float val[kNumFormats][256];
    for (int fi = 0; fi < kNumFormats; ++fi) {
      const MxFormat f = kAllFormats[fi];
      fill_decode_table(make_consts(f), dec[fi]);
      const int mask = (1 << format_bits(f)) - 1;
      for (int code = 0; code < 256; ++code)
        val[fi][code] = decode_element(f, static_cast<uint8_t>(code & mask));
    }
    check(cudaMemcpyToSymbol(c_decode, dec, sizeof(dec)), "upload decode tables");
    check(cudaMemcpyToSymbol(c_value, val, sizeof(val)), "upload value tables");
  });
}

int num_sms() {
  static int sms = [] {
    int dev = 0, n = 0;
    check(cudaGetDevice(&dev), "cudaGetDevice");
    check(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev), "SM count");
    return n;
  }();
  return sms;
}

// Copies a decode table from constant to shared memory, 8 bytes per thread per step.
__device__ void load_table(DecodeTable& dst, int format) {
  const uint64_t* src = reinterpret_cast<const uint64_t*>(&c_decode[format]);
  uint64_t* d = reinterpret_cast<uint64_t*>(&dst);
  for (int i = threadIdx.x; i < static_cast<int>(sizeof(DecodeTable) / 8); i += blockDim.x)
    d[i] = src[i];
}

// ---- quantize / dequantize ---------------------------------------------------------------------
// A CTA takes 256 consecutive MX blocks (the matrix is one sequence of blocks: rows are
// contiguous and hold whole blocks): coalesced loads into shared memory, one thread per block
// through quantize_block, packed words back through shared memory for coalesced stores.
constexpr int kQThreads = 256;

template <int BITS, bool BF16>
__global__ void __launch_bounds__(kQThreads)
    quantize_kernel(const void* x, size_t nblocks, FormatConsts c, QuantizeOptions k, bool vec,
                    uint32_t* codes, uint8_t* scales) {
  __shared__ uint32_t in_s[kQThreads * 33];
  __shared__ uint32_t out_s[kQThreads * (BITS + 1)];
  for (size_t base = blockIdx.x * size_t{kQThreads}; base < nblocks;
       base += gridDim.x * size_t{kQThreads}) {
    const int nb = static_cast<int>(min(size_t{kQThreads}, nblocks - base));
    const int nelem = nb * kBlock;
    if (BF16) {
      const uint16_t* xs = static_cast<const uint16_t*>(x) + base * kBlock;
      if (vec) {
        for (int i = threadIdx.x * 8; i < nelem; i += kQThreads * 8) {
          const uint4 u = __ldg(reinterpret_cast<const uint4*>(xs + i));
          const uint32_t w[4] = {u.x, u.y, u.z, u.w};
          uint32_t* d = in_s + (i >> 5) * 33 + (i & 31);
#pragma unroll
          for (int q = 0; q < 4; ++q) {
            d[2 * q] = w[q] << 16;
            d[2 * q + 1] = w[q] & 0xffff0000u;
          }
        }
      } else {
        for (int i = threadIdx.x; i < nelem; i += kQThreads)
          in_s[(i >> 5) * 33 + (i & 31)] = static_cast<uint32_t>(xs[i]) << 16;
      }
    } else {
      const uint32_t* xs = static_cast<const uint32_t*>(x) + base * kBlock;
      if (vec) {
        for (int i = threadIdx.x * 4; i < nelem; i += kQThreads * 4) {
          const uint4 u = __ldg(reinterpret_cast<const uint4*>(xs + i));
          uint32_t* d = in_s + (i >> 5) * 33 + (i & 31);
          d[0] = u.x;
          d[1] = u.y;
          d[2] = u.z;
          d[3] = u.w;
        }
      } else {
        for (int i = threadIdx.x; i < nelem; i += kQThreads) in_s[(i >> 5) * 33 + (i & 31)] = xs[i];
      }
    }
    __syncthreads();
    if (static_cast<int>(threadIdx.x) < nb) {
      const uint32_t* v = in_s + threadIdx.x * 33;
      uint32_t w[BITS];
      scales[base + threadIdx.x] = quantize_block<BITS>(
          c, k, [&](int i) { return v[i]; }, w);
#pragma unroll
      for (int i = 0; i < BITS; ++i) out_s[threadIdx.x * (BITS + 1) + i] = w[i];
    }
    __syncthreads();
    for (int g = threadIdx.x; g < nb * BITS; g += kQThreads)
      codes[base * BITS + g] = out_s[g + g / BITS];
    __syncthreads();
  }
}

template <int BITS, bool BF16>
__global__ void __launch_bounds__(kQThreads)
    dequantize_kernel(const uint32_t* codes, const uint8_t* scales, size_t nblocks, int format,
                      void* out) {
  __shared__ uint32_t in_s[kQThreads * (BITS + 1)];
  __shared__ uint32_t out_s[kQThreads * 33];
  __shared__ float tv[256];
  __shared__ uint8_t tf[256];
  for (int i = threadIdx.x; i < 256; i += kQThreads) {
    tv[i] = c_value[format][i];
    tf[i] = c_decode[format].flags[i];
  }
  for (size_t base = blockIdx.x * size_t{kQThreads}; base < nblocks;
       base += gridDim.x * size_t{kQThreads}) {
    const int nb = static_cast<int>(min(size_t{kQThreads}, nblocks - base));
    for (int g = threadIdx.x; g < nb * BITS; g += kQThreads)
      in_s[g + g / BITS] = __ldg(codes + base * BITS + g);
    __syncthreads();
    if (static_cast<int>(threadIdx.x) < nb) {
      const uint32_t* w = in_s + threadIdx.x * (BITS + 1);
      const uint8_t sc = scales[base + threadIdx.x];
      uint32_t* o = out_s + threadIdx.x * 33;
#pragma unroll
      for (int i = 0; i < kBlock; ++i) {
        const uint32_t code = code_from_words<BITS>(w, i);
        o[i] = f32_bits(dequantize_element_fast(tv[code], tf[code], sc));
      }
    }
    __syncthreads();
    const int nelem = nb * kBlock;
    if (BF16) {
      uint16_t* dst = static_cast<uint16_t*>(out) + base * kBlock;
      for (int i = threadIdx.x; i < nelem; i += kQThreads)
        dst[i] = f32_to_bf16_bits(f32_from_bits(out_s[(i >> 5) * 33 + (i & 31)]));
    } else {
      uint32_t* dst = static_cast<uint32_t*>(out) + base * kBlock;
      for (int i = threadIdx.x; i < nelem; i += kQThreads) dst[i] = out_s[(i >> 5) * 33 + (i & 31)];
    }
    __syncthreads();
  }
}

// Packed codes -> one byte per code (the whole matrix is one little-endian bit stream).
__global__ void unpack_kernel(const uint8_t* packed, int bits, size_t n, uint8_t* out) {
  for (size_t i = blockIdx.x * size_t{blockDim.x} + threadIdx.x; i < n;
       i += size_t{gridDim.x} * blockDim.x)
    out[i] = code_at(bits, packed, i);
}

__global__ void fill_kernel(float* C, size_t M, size_t N, size_t ldc, float v) {
  for (size_t i = blockIdx.x * size_t{blockDim.x} + threadIdx.x; i < M * N;
       i += size_t{gridDim.x} * blockDim.x)
    C[(i / N) * ldc + i % N] = v;
}

// ---- exact mode --------------------------------------------------------------------------------
template <int BITS>
__device__ __forceinline__ void load_block_words(const uint32_t* p, uint32_t* w) {
  if constexpr (BITS == 4) {
    const uint4 u = __ldg(reinterpret_cast<const uint4*>(p));
    w[0] = u.x, w[1] = u.y, w[2] = u.z, w[3] = u.w;
  } else if constexpr (BITS == 8) {
    const uint4 u = __ldg(reinterpret_cast<const uint4*>(p));
    const uint4 v = __ldg(reinterpret_cast<const uint4*>(p) + 1);
    w[0] = u.x, w[1] = u.y, w[2] = u.z, w[3] = u.w, w[4] = v.x, w[5] = v.y, w[6] = v.z, w[7] = v.w;
  } else {
#pragma unroll
    for (int i = 0; i < BITS / 2; ++i) {
      const uint2 u = __ldg(reinterpret_cast<const uint2*>(p) + i);
      w[2 * i] = u.x, w[2 * i + 1] = u.y;
    }
  }
}

// GEMV (M = 1), exact: a warp owns kGvRows weight rows; lane l computes the block results
// r_j, j = 32c + l, of each row, and lane r then adds its row's 32 results in block order. The
// activation is pre-unpacked to a byte per code.
constexpr int kGvRows = 4, kGvWarps = 4;

template <int BITS, int AccBits>
__global__ void __launch_bounds__(32 * kGvWarps)
    gemv_exact_kernel(const uint8_t* a_codes, const uint8_t* a_scales, int fa,
                      const uint32_t* w_codes, const uint8_t* w_scales, int fw, size_t N, size_t K,
                      int qsum, bool specials_a, bool specials_w, float* y) {
  __shared__ DecodeTable ta, tw;
  __shared__ float part[kGvWarps][kGvRows][33];
  load_table(ta, fa);
  load_table(tw, fw);
  __syncthreads();
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const size_t n0 = (size_t{blockIdx.x} * kGvWarps + warp) * kGvRows;
  const size_t KB = K / kBlock;
  float acc = -0.0f;  // lane r (< kGvRows) accumulates row n0 + r
  for (size_t c0 = 0; c0 < KB; c0 += 32) {
    const size_t j = c0 + lane;
    const bool valid = j < KB;
    uint32_t aw[8] = {};
    uint8_t sa = 0;
    if (valid) {
      const uint4* ap = reinterpret_cast<const uint4*>(a_codes + j * kBlock);
      const uint4 u0 = __ldg(ap), u1 = __ldg(ap + 1);
      aw[0] = u0.x, aw[1] = u0.y, aw[2] = u0.z, aw[3] = u0.w;
      aw[4] = u1.x, aw[5] = u1.y, aw[6] = u1.z, aw[7] = u1.w;
      sa = a_scales[j];
    }
    uint32_t ww[kGvRows][BITS];
    uint8_t sw[kGvRows];
#pragma unroll
    for (int r = 0; r < kGvRows; ++r) {
      const size_t n = n0 + r;
      sw[r] = 0;
#pragma unroll
      for (int i = 0; i < BITS; ++i) ww[r][i] = 0;
      if (valid && n < N) {
        load_block_words<BITS>(w_codes + (n * KB + j) * BITS, ww[r]);
        sw[r] = __ldg(w_scales + n * KB + j);
      }
    }
#pragma unroll
    for (int r = 0; r < kGvRows; ++r) {
      float res = 0.0f;
      if (valid && n0 + r < N) {
        res = dot_block<AccBits>(
            ta, tw, specials_a, specials_w, qsum, sa, sw[r],
            [&](int i) { return static_cast<uint8_t>(aw[i >> 2] >> (8 * (i & 3))); },
            [&](int i) { return static_cast<uint8_t>(code_from_words<BITS>(ww[r], i)); });
      }
      part[warp][r][lane] = res;
    }
    __syncwarp();
    if (lane < kGvRows) {
      const int cnt = static_cast<int>(min(size_t{32}, KB - c0));
      for (int jj = 0; jj < cnt; ++jj) acc = __fadd_rn(acc, part[warp][lane][jj]);
    }
    __syncwarp();
  }
  if (lane < kGvRows && n0 + lane < N) y[n0 + lane] = acc;
}

// GEMM, exact: 64 x 64 tile per CTA, 4 x 4 outputs per thread, one MX block per k-step, both
// operands pre-unpacked to a byte per code.
constexpr int kGeTile = 64;

template <int AccBits>
__global__ void __launch_bounds__(256)
    gemm_exact_kernel(const uint8_t* a_codes, const uint8_t* a_scales, int fa,
                      const uint8_t* w_codes, const uint8_t* w_scales, int fw, size_t M, size_t N,
                      size_t K, int qsum, bool specials_a, bool specials_w, float* C, size_t ldc) {
  __shared__ DecodeTable ta, tw;
  __shared__ uint32_t as[kGeTile][9], ws[kGeTile][9];
  __shared__ uint8_t sas[kGeTile], sws[kGeTile];
  load_table(ta, fa);
  load_table(tw, fw);
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  const size_t m0 = size_t{blockIdx.y} * kGeTile, n0 = size_t{blockIdx.x} * kGeTile;
  const size_t KB = K / kBlock;
  const uint32_t* aw = reinterpret_cast<const uint32_t*>(a_codes);
  const uint32_t* wwp = reinterpret_cast<const uint32_t*>(w_codes);
  float acc[4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[i][j] = -0.0f;
  for (size_t kb = 0; kb < KB; ++kb) {
    __syncthreads();
    for (int idx = threadIdx.x; idx < kGeTile * 8; idx += 256) {
      const int row = idx / 8, w = idx % 8;
      const size_t m = m0 + row, n = n0 + row;
      as[row][w] = m < M ? __ldg(aw + m * (K / 4) + kb * 8 + w) : 0u;
      ws[row][w] = n < N ? __ldg(wwp + n * (K / 4) + kb * 8 + w) : 0u;
    }
    if (threadIdx.x < kGeTile) {
      const size_t m = m0 + threadIdx.x, n = n0 + threadIdx.x;
      sas[threadIdx.x] = m < M ? a_scales[m * KB + kb] : 0;
      sws[threadIdx.x] = n < N ? w_scales[n * KB + kb] : 0;
    }
    __syncthreads();
#pragma unroll 1
    for (int i = 0; i < 4; ++i) {
      const int ra = ty + 16 * i;
#pragma unroll 1
      for (int j = 0; j < 4; ++j) {
        const int rw = tx + 16 * j;
        const float r = dot_block<AccBits>(
            ta, tw, specials_a, specials_w, qsum, sas[ra], sws[rw],
            [&](int e) { return static_cast<uint8_t>(as[ra][e >> 2] >> (8 * (e & 3))); },
            [&](int e) { return static_cast<uint8_t>(ws[rw][e >> 2] >> (8 * (e & 3))); });
        acc[i][j] = __fadd_rn(acc[i][j], r);
      }
    }
  }
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const size_t m = m0 + ty + 16 * i, n = n0 + tx + 16 * j;
      if (m < M && n < N) C[m * ldc + n] = acc[i][j];
    }
}

// ---- fast mode ---------------------------------------------------------------------------------
__device__ __forceinline__ float bf16_lo(uint32_t w) { return __uint_as_float(w << 16); }
__device__ __forceinline__ float bf16_hi(uint32_t w) { return __uint_as_float(w & 0xffff0000u); }

// Small M (<= 8): CUDA cores, a warp owns kGvRows weight rows, lane l the blocks j = l mod 32;
// weights decoded exactly to FP32, per-block FMA chains scaled by 2^s, a shuffle tree at the end.
template <int BITS, bool VecA>
__global__ void __launch_bounds__(32 * kGvWarps)
    gemv_bf16_kernel(const uint16_t* A, size_t lda, const uint32_t* w_codes,
                     const uint8_t* w_scales, int fw, size_t N, size_t K, float* C, size_t ldc) {
  __shared__ float tv[256];
  __shared__ float2 tv2[BITS == 4 ? 256 : 1];  // FP4: a byte (two codes) -> both values
  for (int i = threadIdx.x; i < 256; i += blockDim.x) {
    tv[i] = c_value[fw][i];
    if constexpr (BITS == 4) tv2[i] = make_float2(c_value[fw][i & 15], c_value[fw][i >> 4]);
  }
  __syncthreads();
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const size_t n0 = (size_t{blockIdx.x} * kGvWarps + warp) * kGvRows;
  const uint16_t* a = A + size_t{blockIdx.y} * lda;
  const size_t KB = K / kBlock;
  float acc[kGvRows] = {};
  for (size_t j = lane; j < KB; j += 32) {
    uint32_t ab[16];  // 32 BF16 activations, two per word
    if (VecA) {
      const uint4* ap = reinterpret_cast<const uint4*>(a + j * kBlock);
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        const uint4 u = __ldg(ap + q);
        ab[4 * q] = u.x, ab[4 * q + 1] = u.y, ab[4 * q + 2] = u.z, ab[4 * q + 3] = u.w;
      }
    } else {
#pragma unroll
      for (int q = 0; q < 16; ++q)
        ab[q] = static_cast<uint32_t>(a[j * kBlock + 2 * q]) |
                (static_cast<uint32_t>(a[j * kBlock + 2 * q + 1]) << 16);
    }
    uint32_t ww[kGvRows][BITS];
    uint8_t sw[kGvRows];
#pragma unroll
    for (int r = 0; r < kGvRows; ++r) {
      const size_t n = n0 + r;
      sw[r] = 0;
#pragma unroll
      for (int i = 0; i < BITS; ++i) ww[r][i] = 0;
      if (n < N) {
        load_block_words<BITS>(w_codes + (n * KB + j) * BITS, ww[r]);
        sw[r] = __ldg(w_scales + n * KB + j);
      }
    }
#pragma unroll
    for (int r = 0; r < kGvRows; ++r) {
      float p = 0.0f;
      if constexpr (BITS == 4) {
        // byte b of word q holds elements 8q + 2b (low nibble) and 8q + 2b + 1 (high nibble)
#pragma unroll
        for (int q = 0; q < 4; ++q)
#pragma unroll
          for (int b = 0; b < 4; ++b) {
            const float2 v = tv2[(ww[r][q] >> (8 * b)) & 0xffu];
            p = fmaf(bf16_lo(ab[4 * q + b]), v.x, p);
            p = fmaf(bf16_hi(ab[4 * q + b]), v.y, p);
          }
      } else {
#pragma unroll
        for (int i = 0; i < kBlock; i += 2) {
          p = fmaf(bf16_lo(ab[i / 2]), tv[code_from_words<BITS>(ww[r], i)], p);
          p = fmaf(bf16_hi(ab[i / 2]), tv[code_from_words<BITS>(ww[r], i + 1)], p);
        }
      }
      acc[r] = fmaf(p, scale_to_f32(sw[r]), acc[r]);
    }
  }
#pragma unroll
  for (int r = 0; r < kGvRows; ++r) {
    float v = acc[r];
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    if (lane == 0 && n0 + r < N) C[size_t{blockIdx.y} * ldc + n0 + r] = v;
  }
}

// Large M: 128 x 128 x 32 CTA tiles, 8 warps of 64 x 32, mma.sync m16n8k16 BF16 -> FP32. Each
// k-step is one MX block: A (BF16) goes to shared memory as is; W's codes are decoded to BF16
// (element value x 2^scale, RNE) while being stored. The next tile is loaded into registers
// while the current one is multiplied.
constexpr int kMmaBM = 128, kMmaBN = 128, kMmaLds = 40;  // shared row stride in BF16 (80 bytes)

__device__ __forceinline__ void mma_bf16(float* c, const uint32_t* a, const uint32_t* b) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

template <int BITS, bool VecA>
__global__ void __launch_bounds__(256)
    gemm_bf16_mma_kernel(const uint16_t* A, size_t M, size_t lda, const uint32_t* w_codes,
                         const uint8_t* w_scales, int fw, size_t N, size_t K, float* C,
                         size_t ldc) {
  __shared__ __align__(16) uint16_t As[kMmaBM * kMmaLds];
  __shared__ __align__(16) uint16_t Ws[kMmaBN * kMmaLds];
  __shared__ float tv[256];
  const int tid = threadIdx.x;
  for (int i = tid; i < 256; i += 256) tv[i] = c_value[fw][i];
  const size_t m0 = size_t{blockIdx.y} * kMmaBM, n0 = size_t{blockIdx.x} * kMmaBN;
  const size_t KB = K / kBlock;
  const int warp = tid / 32, lane = tid % 32, g = lane >> 2, t = lane & 3;
  const int wm = warp / 4, wn = warp % 4;  // warp tile rows wm*64, cols wn*32
  const int wrow = tid >> 1, whalf = tid & 1;

  uint4 a_reg[2];
  uint32_t w_reg[BITS / 2];
  uint8_t s_reg = 0;
  auto load_tile = [&](size_t kb) {
#pragma unroll
    for (int q = 0; q < 2; ++q) {
      const int idx = tid + q * 256, row = idx >> 2, ch = idx & 3;
      const size_t m = m0 + row;
      a_reg[q] = make_uint4(0, 0, 0, 0);
      if (m < M) {
        const uint16_t* p = A + m * lda + kb * kBlock + ch * 8;
        if (VecA) {
          a_reg[q] = __ldg(reinterpret_cast<const uint4*>(p));
        } else {
          uint32_t v[4];
#pragma unroll
          for (int e = 0; e < 4; ++e)
            v[e] = static_cast<uint32_t>(p[2 * e]) | (static_cast<uint32_t>(p[2 * e + 1]) << 16);
          a_reg[q] = make_uint4(v[0], v[1], v[2], v[3]);
        }
      }
    }
    const size_t n = n0 + wrow;
#pragma unroll
    for (int i = 0; i < BITS / 2; ++i) w_reg[i] = 0;
    s_reg = 0;
    if (n < N) {
      const uint32_t* p = w_codes + (n * KB + kb) * BITS + whalf * (BITS / 2);
#pragma unroll
      for (int i = 0; i < BITS / 2; ++i) w_reg[i] = __ldg(p + i);
      s_reg = __ldg(w_scales + n * KB + kb);
    }
  };
  auto store_tile = [&]() {
#pragma unroll
    for (int q = 0; q < 2; ++q) {
      const int idx = tid + q * 256, row = idx >> 2, ch = idx & 3;
      *reinterpret_cast<uint4*>(&As[row * kMmaLds + ch * 8]) = a_reg[q];
    }
    const float sf = scale_to_f32(s_reg);
    uint32_t packed[8];
#pragma unroll
    for (int i = 0; i < 16; i += 2) {
      const float v0 = __fmul_rn(tv[code_from_words<BITS>(w_reg, i)], sf);
      const float v1 = __fmul_rn(tv[code_from_words<BITS>(w_reg, i + 1)], sf);
      const __nv_bfloat162 h = __floats2bfloat162_rn(v0, v1);  // v0 in the low half
      packed[i / 2] = *reinterpret_cast<const uint32_t*>(&h);
    }
    uint4* dst = reinterpret_cast<uint4*>(&Ws[wrow * kMmaLds + whalf * 16]);
    dst[0] = make_uint4(packed[0], packed[1], packed[2], packed[3]);
    dst[1] = make_uint4(packed[4], packed[5], packed[6], packed[7]);
  };

  float acc[4][4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.0f;

  __syncthreads();  // tv
  load_tile(0);
  for (size_t kb = 0; kb < KB; ++kb) {
    __syncthreads();
    store_tile();
    __syncthreads();
    if (kb + 1 < KB) load_tile(kb + 1);
#pragma unroll
    for (int kk = 0; kk < kBlock; kk += 16) {
      uint32_t af[4][4], bf[4][2];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int r = wm * 64 + i * 16 + g;
        const uint16_t* p0 = &As[r * kMmaLds + kk + t * 2];
        const uint16_t* p1 = p0 + 8 * kMmaLds;
        af[i][0] = *reinterpret_cast<const uint32_t*>(p0);
        af[i][1] = *reinterpret_cast<const uint32_t*>(p1);
        af[i][2] = *reinterpret_cast<const uint32_t*>(p0 + 8);
        af[i][3] = *reinterpret_cast<const uint32_t*>(p1 + 8);
      }
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int col = wn * 32 + j * 8 + g;
        const uint16_t* p = &Ws[col * kMmaLds + kk + t * 2];
        bf[j][0] = *reinterpret_cast<const uint32_t*>(p);
        bf[j][1] = *reinterpret_cast<const uint32_t*>(p + 8);
      }
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) mma_bf16(acc[i][j], af[i], bf[j]);
    }
  }
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const size_t r = m0 + wm * 64 + i * 16 + g;
      const size_t c = n0 + wn * 32 + j * 8 + t * 2;
      if (r < M) {
        if (c < N) C[r * ldc + c] = acc[i][j][0];
        if (c + 1 < N) C[r * ldc + c + 1] = acc[i][j][1];
      }
      if (r + 8 < M) {
        if (c < N) C[(r + 8) * ldc + c] = acc[i][j][2];
        if (c + 1 < N) C[(r + 8) * ldc + c + 1] = acc[i][j][3];
      }
    }
}

// ---- host side ---------------------------------------------------------------------------------
void check_view(const MxMatrixView& m, const char* what) {
  if (m.cols % kBlockSize)
    fail(std::string(what) + ": cols " + std::to_string(m.cols) + " is not a multiple of 32");
  if (m.rows && m.cols && (!m.codes || !m.scales)) fail(std::string(what) + ": null pointer");
  if (!aligned(m.codes, 16)) fail(std::string(what) + ": codes pointer not 16-byte aligned");
}

int grid_for(size_t work_items, int per_cta) {
  const size_t ctas = (work_items + per_cta - 1) / per_cta;
  return static_cast<int>(std::min<size_t>(ctas, size_t(num_sms()) * 8));
}

template <bool BF16>
void quantize_impl(MxFormat f, const void* x, size_t rows, size_t cols, uint8_t* codes,
                   uint8_t* scales, const QuantizeOptions& opt, void* stream) {
  if (cols % kBlockSize) fail("quantize: cols " + std::to_string(cols) + " not a multiple of 32");
  if (!aligned(codes, 4)) fail("quantize: codes pointer not 4-byte aligned");
  const size_t nblocks = rows * cols / kBlockSize;
  if (nblocks == 0) return;
  const FormatConsts c = make_consts(f);
  const QuantizeOptions k = opt;
  const bool vec = aligned(x, 16);
  const int grid = grid_for(nblocks, kQThreads);
  uint32_t* cw = reinterpret_cast<uint32_t*>(codes);
  switch (c.bits) {
    case 4:
      quantize_kernel<4, BF16>
          <<<grid, kQThreads, 0, as_stream(stream)>>>(x, nblocks, c, k, vec, cw, scales);
      break;
    case 6:
      quantize_kernel<6, BF16>
          <<<grid, kQThreads, 0, as_stream(stream)>>>(x, nblocks, c, k, vec, cw, scales);
      break;
    default:
      quantize_kernel<8, BF16>
          <<<grid, kQThreads, 0, as_stream(stream)>>>(x, nblocks, c, k, vec, cw, scales);
  }
  check(cudaGetLastError(), "quantize launch");
}

template <bool BF16>
void dequantize_impl(const MxMatrixView& m, void* out, void* stream) {
  check_view(m, "dequantize");
  const size_t nblocks = m.rows * m.cols / kBlockSize;
  if (nblocks == 0) return;
  ensure_tables();
  const int grid = grid_for(nblocks, kQThreads);
  const uint32_t* cw = reinterpret_cast<const uint32_t*>(m.codes);
  const int fi = static_cast<int>(m.format);
  switch (format_bits(m.format)) {
    case 4:
      dequantize_kernel<4, BF16>
          <<<grid, kQThreads, 0, as_stream(stream)>>>(cw, m.scales, nblocks, fi, out);
      break;
    case 6:
      dequantize_kernel<6, BF16>
          <<<grid, kQThreads, 0, as_stream(stream)>>>(cw, m.scales, nblocks, fi, out);
      break;
    default:
      dequantize_kernel<8, BF16>
          <<<grid, kQThreads, 0, as_stream(stream)>>>(cw, m.scales, nblocks, fi, out);
  }
  check(cudaGetLastError(), "dequantize launch");
}

// A stream-ordered temporary device buffer.
struct DeviceBuffer {
  void* p = nullptr;
  cudaStream_t s;
  DeviceBuffer(size_t bytes, cudaStream_t stream) : s(stream) {
    check(cudaMallocAsync(&p, std::max<size_t>(bytes, 16), s), "temporary buffer");
  }
  ~DeviceBuffer() { cudaFreeAsync(p, s); }
  uint8_t* bytes() { return static_cast<uint8_t*>(p); }
};

void unpack(const MxMatrixView& m, uint8_t* out, cudaStream_t s) {
  const size_t n = m.rows * m.cols;
  unpack_kernel<<<grid_for(n, 256), 256, 0, s>>>(m.codes, format_bits(m.format), n, out);
  check(cudaGetLastError(), "unpack launch");
}

// The exact kernels' launches, instantiated per accumulator width (and weight bit width).
struct ExactArgs {
  const uint8_t *ac, *as;
  int fa;
  const uint8_t *wc, *ws;
  int fw;
  size_t M, N, K;
  int qsum;
  bool specials_a, specials_w;
  float* C;
  size_t ldc;
};

template <int AccBits>
void launch_exact(int bits, cudaStream_t s, const ExactArgs& e) {
  if (e.M == 1) {
    const dim3 grid(static_cast<unsigned>((e.N + kGvWarps * kGvRows - 1) / (kGvWarps * kGvRows)));
    const int threads = 32 * kGvWarps;
    const uint32_t* wc = reinterpret_cast<const uint32_t*>(e.wc);
    switch (bits) {
      case 4:
        gemv_exact_kernel<4, AccBits><<<grid, threads, 0, s>>>(
            e.ac, e.as, e.fa, wc, e.ws, e.fw, e.N, e.K, e.qsum, e.specials_a, e.specials_w, e.C);
        break;
      case 6:
        gemv_exact_kernel<6, AccBits><<<grid, threads, 0, s>>>(
            e.ac, e.as, e.fa, wc, e.ws, e.fw, e.N, e.K, e.qsum, e.specials_a, e.specials_w, e.C);
        break;
      default:
        gemv_exact_kernel<8, AccBits><<<grid, threads, 0, s>>>(
            e.ac, e.as, e.fa, wc, e.ws, e.fw, e.N, e.K, e.qsum, e.specials_a, e.specials_w, e.C);
    }
    return;
  }
  const dim3 grid(static_cast<unsigned>((e.N + kGeTile - 1) / kGeTile),
                  static_cast<unsigned>((e.M + kGeTile - 1) / kGeTile));
  gemm_exact_kernel<AccBits><<<grid, 256, 0, s>>>(e.ac, e.as, e.fa, e.wc, e.ws, e.fw, e.M, e.N, e.K,
                                                  e.qsum, e.specials_a, e.specials_w, e.C, e.ldc);
}

template <bool VecA>
void launch_gemm_bf16(int bits, bool small, size_t M, cudaStream_t s, const uint16_t* A, size_t lda,
                      const uint32_t* wc, const uint8_t* ws, int fw, size_t N, size_t K, float* C,
                      size_t ldc) {
  if (small) {
    const dim3 grid(static_cast<unsigned>((N + kGvWarps * kGvRows - 1) / (kGvWarps * kGvRows)),
                    static_cast<unsigned>(M));
    const int threads = 32 * kGvWarps;
    switch (bits) {
      case 4:
        gemv_bf16_kernel<4, VecA><<<grid, threads, 0, s>>>(A, lda, wc, ws, fw, N, K, C, ldc);
        break;
      case 6:
        gemv_bf16_kernel<6, VecA><<<grid, threads, 0, s>>>(A, lda, wc, ws, fw, N, K, C, ldc);
        break;
      default:
        gemv_bf16_kernel<8, VecA><<<grid, threads, 0, s>>>(A, lda, wc, ws, fw, N, K, C, ldc);
    }
    return;
  }
  const dim3 grid(static_cast<unsigned>((N + kMmaBN - 1) / kMmaBN),
                  static_cast<unsigned>((M + kMmaBM - 1) / kMmaBM));
  switch (bits) {
    case 4:
      gemm_bf16_mma_kernel<4, VecA><<<grid, 256, 0, s>>>(A, M, lda, wc, ws, fw, N, K, C, ldc);
      break;
    case 6:
      gemm_bf16_mma_kernel<6, VecA><<<grid, 256, 0, s>>>(A, M, lda, wc, ws, fw, N, K, C, ldc);
      break;
    default:
      gemm_bf16_mma_kernel<8, VecA><<<grid, 256, 0, s>>>(A, M, lda, wc, ws, fw, N, K, C, ldc);
  }
}

constexpr size_t kSmallM = 8;  // fast mode: M <= kSmallM runs on CUDA cores, larger M on MMA

}  // namespace

DeviceStatus device_status() {
  DeviceStatus st;
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    st.description = std::string("no usable CUDA device: ") + cudaGetErrorString(e);
    cudaGetLastError();
    return st;
  }
  if (count == 0) {
    st.description = "no CUDA device";
    return st;
  }
  int dev = 0;
  cudaDeviceProp prop{};
  if (cudaGetDevice(&dev) != cudaSuccess || cudaGetDeviceProperties(&prop, dev) != cudaSuccess) {
    st.description = "cannot query the CUDA device";
    cudaGetLastError();
    return st;
  }
  cudaFuncAttributes attr{};
  const cudaError_t img = cudaFuncGetAttributes(&attr, unpack_kernel);
  if (img != cudaSuccess) {
    st.description = std::string(prop.name) + ": no kernel image for sm_" +
                     std::to_string(prop.major) + std::to_string(prop.minor) + " (" +
                     cudaGetErrorString(img) + "); rebuild with CMAKE_CUDA_ARCHITECTURES";
    cudaGetLastError();
    return st;
  }
  st.available = true;
  st.description = std::string(prop.name) + " (sm_" + std::to_string(prop.major) +
                   std::to_string(prop.minor) + ", " + std::to_string(prop.multiProcessorCount) +
                   " SMs)";
  return st;
}

void quantize(MxFormat f, const float* x, size_t rows, size_t cols, uint8_t* codes, uint8_t* scales,
              const QuantizeOptions& opt, void* stream) {
  quantize_impl<false>(f, x, rows, cols, codes, scales, opt, stream);
}
void quantize_bf16(MxFormat f, const uint16_t* x, size_t rows, size_t cols, uint8_t* codes,
                   uint8_t* scales, const QuantizeOptions& opt, void* stream) {
  quantize_impl<true>(f, x, rows, cols, codes, scales, opt, stream);
}
void dequantize(const MxMatrixView& m, float* out, void* stream) {
  dequantize_impl<false>(m, out, stream);
}
void dequantize_bf16(const MxMatrixView& m, uint16_t* out, void* stream) {
  dequantize_impl<true>(m, out, stream);
}

void gemm(const MxMatrixView& A, const MxMatrixView& W, float* C, size_t ldc, void* stream) {
  check_view(A, "gemm A");
  check_view(W, "gemm W");
  if (A.cols != W.cols)
    fail("gemm: A has " + std::to_string(A.cols) + " columns, W " + std::to_string(W.cols));
  if (ldc < W.rows) fail("gemm: ldc smaller than N");
  const size_t M = A.rows, N = W.rows, K = A.cols;
  if (M == 0 || N == 0) return;
  ensure_tables();
  cudaStream_t s = as_stream(stream);
  if (K == 0) {  // dot_blocked of nothing is the -0 it starts from
    fill_kernel<<<grid_for(M * N, 256), 256, 0, s>>>(C, M, N, ldc, -0.0f);
    check(cudaGetLastError(), "fill launch");
    return;
  }
  const FormatConsts ca = make_consts(A.format), cw = make_consts(W.format);
  const int fa = static_cast<int>(A.format), fw = static_cast<int>(W.format);
  // M == 1: only the activation is unpacked (GEMV reads the packed weights); else both are.
  DeviceBuffer abytes(M * K, s);
  unpack(A, abytes.bytes(), s);
  std::unique_ptr<DeviceBuffer> wbytes;
  if (M > 1) {
    wbytes = std::make_unique<DeviceBuffer>(N * K, s);
    unpack(W, wbytes->bytes(), s);
  }
  const ExactArgs e{abytes.bytes(),
                    A.scales,
                    fa,
                    M > 1 ? wbytes->bytes() : W.codes,
                    W.scales,
                    fw,
                    M,
                    N,
                    K,
                    ca.quantum_exp + cw.quantum_exp,
                    ca.has_nan || ca.has_inf,
                    cw.has_nan || cw.has_inf,
                    C,
                    ldc};
  switch (acc_bits(ca, cw)) {
    case 32:
      launch_exact<32>(cw.bits, s, e);
      break;
    case 64:
      launch_exact<64>(cw.bits, s, e);
      break;
    default:
      launch_exact<128>(cw.bits, s, e);
  }
  check(cudaGetLastError(), "gemm launch");
}

void gemm_bf16(const uint16_t* A, size_t M, size_t lda, const MxMatrixView& W, float* C, size_t ldc,
               void* stream) {
  check_view(W, "gemm_bf16 W");
  if (lda < W.cols) fail("gemm_bf16: lda smaller than K");
  if (ldc < W.rows) fail("gemm_bf16: ldc smaller than N");
  const size_t N = W.rows, K = W.cols;
  if (M == 0 || N == 0) return;
  cudaStream_t s = as_stream(stream);
  if (K == 0) {
    fill_kernel<<<grid_for(M * N, 256), 256, 0, s>>>(C, M, N, ldc, 0.0f);
    check(cudaGetLastError(), "fill launch");
    return;
  }
  ensure_tables();
  const bool vec = aligned(A, 16) && lda % 8 == 0;
  const uint32_t* wc = reinterpret_cast<const uint32_t*>(W.codes);
  const int fw = static_cast<int>(W.format);
  const bool small = M <= kSmallM;
  if (vec)
    launch_gemm_bf16<true>(format_bits(W.format), small, M, s, A, lda, wc, W.scales, fw, N, K, C,
                           ldc);
  else
    launch_gemm_bf16<false>(format_bits(W.format), small, M, s, A, lda, wc, W.scales, fw, N, K, C,
                            ldc);
  check(cudaGetLastError(), "gemm_bf16 launch");
}

}  // namespace dmx::cuda
