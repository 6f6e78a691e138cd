// Internal to kernels/cuda: what every CUDA kernel file shares. The decode tables live in
// constant memory, one copy per translation unit (no relocatable device code): each file's
// ensure_tables() uploads its own copy once per process. Everything here has internal linkage.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <dmx/kernels_cuda.h>

#include <algorithm>
#include <cstdint>
#include <mutex>
#include <stdexcept>
#include <string>

#include "mx_device.h"

namespace dmx::cuda {
namespace {

using namespace detail;
static_assert(kBlock == kBlockSize, "mx_device.h block size");

inline void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    throw std::runtime_error(std::string("dmx::cuda: ") + what + ": " + cudaGetErrorString(e));
}
[[noreturn]] inline void fail(const std::string& what) {
  throw std::runtime_error("dmx::cuda: " + what);
}
inline cudaStream_t as_stream(void* s) { return static_cast<cudaStream_t>(s); }
inline bool aligned(const void* p, size_t a) { return reinterpret_cast<uintptr_t>(p) % a == 0; }

// Decode tables for every format in constant memory (copied to shared memory by the kernels).
__constant__ DecodeTable c_decode[kNumFormats];
__constant__ float c_value[kNumFormats][256];

// Builds the tables on the host from golden (values) and the MX core's decode, and
// uploads them once per process (to the current device).
inline void ensure_tables() {
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

inline int num_sms() {
  static int sms = [] {
    int dev = 0, n = 0;
    check(cudaGetDevice(&dev), "cudaGetDevice");
    check(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev), "SM count");
    return n;
  }();
  return sms;
}

// Copies a decode table from constant to shared memory, 8 bytes per thread per step.
__device__ inline void load_table(DecodeTable& dst, int format) {
  const uint64_t* src = reinterpret_cast<const uint64_t*>(&c_decode[format]);
  uint64_t* d = reinterpret_cast<uint64_t*>(&dst);
  for (int i = threadIdx.x; i < static_cast<int>(sizeof(DecodeTable) / 8); i += blockDim.x)
    d[i] = src[i];
}

// One MX block's packed codes (BITS 32-bit words, 16-byte aligned) from global memory.
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

// GEMVs (exact and fast): a CTA of kGvWarps warps, each warp owning kGvRows weight rows.
constexpr int kGvRows = 4, kGvWarps = 4;

// ---- host side shared by the launches -----------------------------------------------------------
inline void check_view(const MxMatrixView& m, const char* what) {
  if (m.cols % kBlockSize)
    fail(std::string(what) + ": cols " + std::to_string(m.cols) + " is not a multiple of 32");
  if (m.rows && m.cols && (!m.codes || !m.scales)) fail(std::string(what) + ": null pointer");
  if (!aligned(m.codes, 16)) fail(std::string(what) + ": codes pointer not 16-byte aligned");
}

inline int grid_for(size_t work_items, int per_cta) {
  const size_t ctas = (work_items + per_cta - 1) / per_cta;
  return static_cast<int>(std::min<size_t>(ctas, size_t(num_sms()) * 8));
}

// C[M, N] (leading dimension ldc) = v: the result of an empty dot product.
__global__ void fill_kernel(float* C, size_t M, size_t N, size_t ldc, float v) {
  for (size_t i = blockIdx.x * size_t{blockDim.x} + threadIdx.x; i < M * N;
       i += size_t{gridDim.x} * blockDim.x)
    C[(i / N) * ldc + i % N] = v;
}

}  // namespace
}  // namespace dmx::cuda
