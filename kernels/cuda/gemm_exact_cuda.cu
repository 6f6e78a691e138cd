// dMX CUDA exact MX x MX GEMV/GEMM: golden's dot_blocked bit for bit (integer block sums in a
// 32-, 64- or 128-bit accumulator by format pair, one FP32 rounding per block).
#include <memory>

#include "cuda_common.cuh"

namespace dmx::cuda {
namespace {

// Packed codes -> one byte per code (the whole matrix is one little-endian bit stream).
__global__ void unpack_kernel(const uint8_t* packed, int bits, size_t n, uint8_t* out) {
  for (size_t i = blockIdx.x * size_t{blockDim.x} + threadIdx.x; i < n;
       i += size_t{gridDim.x} * blockDim.x)
    out[i] = code_at(bits, packed, i);
}

// ---- exact mode --------------------------------------------------------------------------------
// GEMV (M = 1), exact: a warp owns kGvRows weight rows; lane l computes the block results
// r_j, j = 32c + l, of each row, and lane r then adds its row's 32 results in block order. The
// activation is pre-unpacked to a byte per code.
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

}  // namespace

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

}  // namespace dmx::cuda
