// dMX CUDA quantize / dequantize (FP32 or BF16 <-> packed MX codes + E8M0 scales), and the
// device probe. The per-block arithmetic is mx_device.h's (the MX core's rules); this file holds
// the data movement and the launches.
#include "cuda_common.cuh"

namespace dmx::cuda {
namespace {

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
  const cudaError_t img = cudaFuncGetAttributes(&attr, fill_kernel);
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

}  // namespace dmx::cuda
