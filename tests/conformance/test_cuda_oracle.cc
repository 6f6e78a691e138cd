// Element encode against NVIDIA's host-callable conversions (cuda_fp8.h, cuda_fp6.h, cuda_fp4.h),
// an implementation written independently of ours. Default set: a strided sample of 2^24 FP32
// bit patterns per format and mode. Built with DMX_EXHAUSTIVE: all 2^32 (ctest label `long`).
//
// Intentional differences (skipped bit-compares, checked for meaning instead):
//  - NaN inputs to FP8: NVIDIA may keep the NaN's sign; golden always emits 0x7F. Both decode NaN.
#include <cuda_fp4.h>
#include <cuda_fp6.h>
#include <cuda_fp8.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <thread>
#include <vector>

#include "dmx/golden.h"
#include "oracle.h"

using dmx::MxFormat;

namespace {

uint8_t nv_encode(MxFormat f, float x, bool ovf) {
  const __nv_saturation_t sat = ovf ? __NV_NOSAT : __NV_SATFINITE;
  switch (f) {
    case MxFormat::E4M3: return __nv_cvt_float_to_fp8(x, sat, __NV_E4M3);
    case MxFormat::E5M2: return __nv_cvt_float_to_fp8(x, sat, __NV_E5M2);
    case MxFormat::E3M2: return __nv_cvt_float_to_fp6(x, __NV_E3M2, cudaRoundNearest);
    case MxFormat::E2M3: return __nv_cvt_float_to_fp6(x, __NV_E2M3, cudaRoundNearest);
    case MxFormat::E2M1: return __nv_cvt_float_to_fp4(x, __NV_E2M1, cudaRoundNearest);
    default: return 0;
  }
}

#ifdef DMX_EXHAUSTIVE
constexpr uint64_t kStride = 1;
#else
constexpr uint64_t kStride = 256;
#endif

struct Failure {
  uint32_t bits;
  bool ovf;
  uint8_t got, want;
};

// Sweeps i*stride + (i*37 mod stride) over the FP32 bit patterns on all cores.
std::vector<Failure> sweep(MxFormat f) {
  const unsigned nthreads = std::max(1u, std::thread::hardware_concurrency());
  const uint64_t count = (1ull << 32) / kStride;
  std::vector<std::vector<Failure>> fails(nthreads);
  std::vector<std::thread> pool;
  const bool fp8 = f == MxFormat::E4M3 || f == MxFormat::E5M2;
  for (unsigned t = 0; t < nthreads; ++t) {
    pool.emplace_back([&, t] {
      for (uint64_t i = t; i < count; i += nthreads) {
        const uint32_t b = static_cast<uint32_t>(i * kStride + (i * 37) % kStride);
        const float x = oracle::from_bits(b);
        for (int ovf = 0; ovf <= (fp8 ? 1 : 0); ++ovf) {
          const uint8_t want = nv_encode(f, x, ovf);
          const uint8_t got = dmx::encode_element(f, x, ovf ? dmx::Overflow::OVF : dmx::Overflow::SAT);
          if (got == want) continue;
          if (std::isnan(x) && fp8 && std::isnan(dmx::decode_element(f, got)) &&
              std::isnan(dmx::decode_element(f, want)))
            continue;  // documented: NaN sign
          if (fails[t].size() < 20) fails[t].push_back({b, ovf != 0, got, want});
        }
      }
    });
  }
  for (auto& th : pool) th.join();
  std::vector<Failure> all;
  for (auto& v : fails) all.insert(all.end(), v.begin(), v.end());
  return all;
}

class CudaOracle : public testing::TestWithParam<MxFormat> {};

TEST_P(CudaOracle, EncodeMatchesNvidia) {
  const auto fails = sweep(GetParam());
  for (const auto& fl : fails)
    ADD_FAILURE() << dmx::format_name(GetParam()) << " bits 0x" << std::hex << fl.bits << " ("
                  << std::hexfloat << oracle::from_bits(fl.bits) << ")" << (fl.ovf ? " OVF" : " SAT")
                  << " golden 0x" << int(fl.got) << " nvidia 0x" << int(fl.want);
  EXPECT_TRUE(fails.empty());
}

INSTANTIATE_TEST_SUITE_P(Formats, CudaOracle,
                         testing::Values(MxFormat::E4M3, MxFormat::E5M2, MxFormat::E3M2,
                                         MxFormat::E2M3, MxFormat::E2M1),
                         [](const auto& info) { return std::string(dmx::format_name(info.param)); });

// INT8 has no NVIDIA conversion: the independent check is RNE in double, clamped.
TEST(CudaOracleInt8, EncodeMatchesDoubleRounding) {
  const uint64_t count = (1ull << 32) / kStride;
  std::atomic<int> bad{0};
  const unsigned nthreads = std::max(1u, std::thread::hardware_concurrency());
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < nthreads; ++t)
    pool.emplace_back([&, t] {
      for (uint64_t i = t; i < count; i += nthreads) {
        const uint32_t b = static_cast<uint32_t>(i * kStride + (i * 37) % kStride);
        const float x = oracle::from_bits(b);
        int want;
        if (std::isnan(x))
          want = 127;
        else {
          const double r = std::nearbyint(std::fmax(std::fmin(static_cast<double>(x) * 64.0, 1e6), -1e6));
          want = static_cast<int>(std::fmax(std::fmin(r, 127.0), -127.0));
        }
        if (dmx::encode_element(MxFormat::INT8, x) != static_cast<uint8_t>(static_cast<int8_t>(want)))
          if (bad++ < 10)
            ADD_FAILURE() << "INT8 bits 0x" << std::hex << b;
      }
    });
  for (auto& th : pool) th.join();
  EXPECT_EQ(bad.load(), 0);
}

// E8M0 with round-toward-zero is floor(log2 x) + 127 for normal FP32 inputs: NVIDIA's
// conversion checks golden's exact floor_log2 and the FLOOR scale's exponent extraction.
TEST(CudaOracleE8M0, FloorLog2MatchesNvidia) {
  const uint64_t count = (1ull << 31) / kStride;
  int bad = 0;
  for (uint64_t i = 0; i < count; ++i) {
    const uint32_t b = static_cast<uint32_t>(i * kStride + (i * 37) % kStride) & 0x7fffffffu;
    if ((b >> 23) == 0 || (b >> 23) == 0xff) continue;  // normals only (subnormals saturate there)
    const float x = oracle::from_bits(b);
    const int want = __nv_cvt_float_to_e8m0(x, __NV_SATFINITE, cudaRoundZero);
    if (dmx::floor_log2(x) + 127 != want && bad++ < 10)
      ADD_FAILURE() << "bits 0x" << std::hex << b;
  }
  EXPECT_EQ(bad, 0);
}

}  // namespace
