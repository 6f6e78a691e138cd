// dMX golden: the bit-exact reference model of the OCP Microscaling (MX) v1.0 formats.
//
// Every other part of the suite (rtl/, sim/, kernels/, quant/) is checked against this file's
// functions, and takes its format constants from here. golden/README.md states the numeric contract
// ("The numeric contract") and the choices made where the spec leaves freedom.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

#include "dmx/mx_core.h"

namespace dmx {

// The format table, the policies and the bit-level arithmetic live in the header-only core.
inline constexpr std::array<MxFormat, kNumFormats> kAllFormats = {
    MxFormat::E4M3, MxFormat::E5M2, MxFormat::E3M2, MxFormat::E2M3, MxFormat::E2M1, MxFormat::INT8};

inline int format_bits(MxFormat f) { return format_info(f).bits; }
const char* format_name(MxFormat f);
// Accepts "e4m3", "fp8_e4m3", "mxfp8_e4m3", "mxfp8" (= E4M3), "e5m2", "fp8_e5m2", "e3m2",
// "fp6_e3m2", "e2m3", "fp6_e2m3", "mxfp6" (= E2M3), "e2m1", "fp4", "fp4_e2m1", "mxfp4", "int8",
// "mxint8"; case-insensitive.
std::optional<MxFormat> parse_format(std::string_view s);

// ---- E8M0 shared scale -------------------------------------------------------------------------
inline bool scale_is_nan(uint8_t code) { return code == kScaleNaN; }
// 2^(code-127) as FP32 (exact: 2^-127 is an FP32 subnormal); NaN for 0xFF.
float decode_scale(uint8_t code);

const char* scale_rule_name(ScaleRule r);
std::optional<ScaleRule> parse_scale_rule(std::string_view s);

// ---- Elements ----------------------------------------------------------------------------------
ElementValue decode_element_exact(MxFormat f, uint8_t code);
// code -> FP32 (exact: every element value is representable in FP32).
float decode_element(MxFormat f, uint8_t code);
// FP32 -> code with one RNE rounding onto the element grid (subnormals kept, -0 kept).
// SAT saturates finite overflow and Inf to +-max; NaN gives the format's NaN (0x7F for FP8) or,
// where the format has none, +max as NVIDIA's conversions do (quantize_block's NaN policy acts
// before this is reached).
uint8_t encode_element(MxFormat f, float x, Overflow ov = Overflow::SAT,
                       bool int8_allow_minus128 = false);
// Same, for x * 2^-shift taken exactly (no intermediate FP32 rounding): the block quantizer's
// step 3.
uint8_t encode_element_scaled(MxFormat f, float x, int shift, Overflow ov = Overflow::SAT,
                              bool int8_allow_minus128 = false);

// ---- Blocks ------------------------------------------------------------------------------------
struct MxBlock {
  uint8_t scale = 0;
  std::array<uint8_t, kBlockSize> codes{};  // unpacked, one code per byte
};
// floor(log2 |x|) taken exactly from the FP32 bits, subnormals included; x finite and non-zero.
int floor_log2(float x);
// Shared exponent s (unbiased, clamped to [-127, 127]) for a block whose max |V_i| is amax.
int shared_exponent(MxFormat f, float amax, ScaleRule rule);
MxBlock quantize_block(MxFormat f, const float* v, const QuantizeOptions& opt = {});
void dequantize_block(MxFormat f, const MxBlock& b, float* out);
// Row helpers over n elements (n a multiple of 32); codes unpacked, one per byte.
void quantize_row(MxFormat f, const float* v, size_t n, uint8_t* scales, uint8_t* codes,
                  const QuantizeOptions& opt = {});
void dequantize_row(MxFormat f, const uint8_t* scales, const uint8_t* codes, size_t n, float* out);
// Number of elements after zero padding up to a multiple of 32.
inline size_t padded_length(size_t n) { return (n + kBlockSize - 1) / kBlockSize * kBlockSize; }

// ---- Canonical packed layout -------------------------------------------------------------------
// FP8/INT8: a byte per element. FP4: two per byte, even element in the low nibble.
// FP6: four elements in three bytes, element i at bits [6i, 6i+6) of a little-endian 24-bit word.
size_t packed_bytes(MxFormat f, size_t n);  // n a multiple of 4 for FP6, of 2 for FP4
void pack_codes(MxFormat f, const uint8_t* codes, size_t n, uint8_t* packed);
void unpack_codes(MxFormat f, const uint8_t* packed, size_t n, uint8_t* codes);

// ---- Dot products ------------------------------------------------------------------------------
// One MX operand: n elements (a multiple of 32) as unpacked codes plus n/32 scales.
struct MxVector {
  MxFormat format;
  const uint8_t* scales;
  const uint8_t* codes;
};
// The whole dot product computed exactly, rounded once to FP32 (RNE).
float dot_exact(const MxVector& a, const MxVector& b, size_t n);
// One block step of dot_blocked: r = RNE_fp32(2^(sa+sb-254) * sum_i Pa_i * Pb_i), sum exact.
// An exact zero sum is -0 only when every product is -0 (IEEE's rule for sums of zeros).
float dot_block(MxFormat fa, uint8_t sa, const uint8_t* ca, MxFormat fb, uint8_t sb,
                const uint8_t* cb);
// The accumulation contract: C = ((r_0 + r_1) + r_2) + ... in FP32 RNE, blocks in increasing k.
// `acc` is the accumulator the first block is added into; the default -0.0f leaves r_0 unchanged
// (x + -0 == x for every x), so the default is exactly the contract's C.
float dot_blocked(const MxVector& a, const MxVector& b, size_t n, float acc = -0.0f);

// ---- Exact FP32 rounding helpers (shared by the model and its tests) ----------------------------
// RNE of (negative ? -1 : 1) * magnitude * 2^exp to FP32 with subnormals and overflow to Inf.
float round_to_fp32(bool negative, unsigned __int128 magnitude, int exp);
// FP32 <-> bits (inline: kernels use them on hot paths), BF16 (RNE, NaN kept quiet) helpers.
inline uint32_t fp32_bits(float x) {
  uint32_t b;
  std::memcpy(&b, &x, 4);
  return b;
}
inline float fp32_from_bits(uint32_t b) {
  float x;
  std::memcpy(&x, &b, 4);
  return x;
}
uint16_t fp32_to_bf16(float x);
float bf16_to_fp32(uint16_t b);

}  // namespace dmx
