// dMX CUDA fast BF16 x MX GEMV/GEMM: BF16 activations against packed MX weights, CUDA cores for
// M <= 8 and mma.sync BF16 tensor cores above (FP32 accumulation, within the error bound of
// README.md).
#include "cuda_common.cuh"

namespace dmx::cuda {
namespace {

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
