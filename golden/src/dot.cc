// Dot products: dot_exact (one rounding) and dot_blocked (the accumulation contract).
#include <cmath>
#include <limits>
#include <stdexcept>

#include "dmx/golden.h"

namespace dmx {
namespace {

core::BlockSum block_sum(MxFormat fa, const uint8_t* ca, MxFormat fb, const uint8_t* cb) {
  core::BlockSum r;
  for (int i = 0; i < kBlockSize; ++i)
    r.add(decode_element_exact(fa, ca[i]), decode_element_exact(fb, cb[i]));
  return r;
}

// A two's-complement fixed-point accumulator wide enough for any MX dot product exactly:
// block sums reach 2^70 at exponents from -286 (E5M2 quanta with the smallest scales) to
// +252, and 2^40 blocks add another 40 bits.
class WideAccumulator {
 public:
  static constexpr int kLimbs = 12;    // 768 bits
  static constexpr int kOffset = 320;  // bit position of 2^0
  void add(__int128 v, int exp) {
    if (v == 0) return;
    const int pos = exp + kOffset;
    if (pos < 0 || pos + 130 > kLimbs * 64) throw std::logic_error("WideAccumulator range");
    // Sign-extend v into limbs starting at bit `pos`.
    uint64_t addend[kLimbs + 1] = {};
    const bool neg = v < 0;
    unsigned __int128 u = static_cast<unsigned __int128>(v);
    const int limb = pos / 64, bit = pos % 64;
    uint64_t words[3] = {static_cast<uint64_t>(u), static_cast<uint64_t>(u >> 64),
                         neg ? ~0ull : 0ull};
    for (int k = 0; k < 3; ++k) {
      if (limb + k < kLimbs) addend[limb + k] |= words[k] << bit;
      if (bit && limb + k + 1 < kLimbs) addend[limb + k + 1] |= words[k] >> (64 - bit);
    }
    for (int k = limb + 3; k < kLimbs && neg; ++k) addend[k] = ~0ull;
    unsigned __int128 carry = 0;
    for (int k = 0; k < kLimbs; ++k) {
      const unsigned __int128 s = static_cast<unsigned __int128>(limbs_[k]) + addend[k] + carry;
      limbs_[k] = static_cast<uint64_t>(s);
      carry = s >> 64;
    }
  }
  float round() const {
    uint64_t mag[kLimbs];
    const bool neg = limbs_[kLimbs - 1] >> 63;
    // magnitude = neg ? -value : value
    unsigned __int128 carry = 1;
    for (int k = 0; k < kLimbs; ++k) {
      if (neg) {
        const unsigned __int128 s = static_cast<unsigned __int128>(~limbs_[k]) + carry;
        mag[k] = static_cast<uint64_t>(s);
        carry = s >> 64;
      } else {
        mag[k] = limbs_[k];
      }
    }
    int top = -1;
    for (int k = kLimbs - 1; k >= 0 && top < 0; --k)
      if (mag[k]) top = k * 64 + 63 - __builtin_clzll(mag[k]);
    if (top < 0) return 0.0f;
    // Keep the 64 bits below and including `top`, and fold the rest into a sticky bit;
    // round_to_fp32 then rounds that 65-bit value exactly as the full one.
    const int lo = std::max(top - 63, 0);
    auto bit_at = [&](int i) { return (mag[i / 64] >> (i % 64)) & 1ull; };
    unsigned __int128 window = 0;
    for (int i = top; i >= lo; --i) window = (window << 1) | bit_at(i);
    bool sticky = false;
    for (int i = lo - 1; i >= 0 && !sticky; --i) sticky = bit_at(i);
    window = (window << 1) | (sticky ? 1 : 0);
    return round_to_fp32(neg, window, lo - 1 - kOffset);
  }

 private:
  uint64_t limbs_[kLimbs] = {};
};

void check_length(size_t n) {
  if (n % kBlockSize) throw std::invalid_argument("dot: length not a multiple of 32");
}

}  // namespace

float dot_block(MxFormat fa, uint8_t sa, const uint8_t* ca, MxFormat fb, uint8_t sb,
                const uint8_t* cb) {
  const int qsum = format_info(fa).quantum_exp + format_info(fb).quantum_exp;
  return fp32_from_bits(block_sum(fa, ca, fb, cb).result_bits(qsum, sa, sb));
}

float dot_blocked(const MxVector& a, const MxVector& b, size_t n, float acc) {
  check_length(n);
  for (size_t j = 0; j < n / kBlockSize; ++j) {
    const float r = dot_block(a.format, a.scales[j], a.codes + j * kBlockSize, b.format,
                              b.scales[j], b.codes + j * kBlockSize);
    acc = acc + r;  // FP32 RNE (compiled with -ffp-contract=off, no fast-math)
  }
  return acc;
}

// The whole sum in one wide accumulator; the specials follow dot_block's rules over all blocks.
float dot_exact(const MxVector& a, const MxVector& b, size_t n) {
  check_length(n);
  const int q = format_info(a.format).quantum_exp + format_info(b.format).quantum_exp;
  WideAccumulator acc;
  core::BlockSum specials;  // NaN / Inf / all-(-0) bookkeeping over every block
  bool nan_scale = false;
  for (size_t j = 0; j < n / kBlockSize; ++j) {
    if (a.scales[j] == kScaleNaN || b.scales[j] == kScaleNaN) nan_scale = true;
    const core::BlockSum r =
        block_sum(a.format, a.codes + j * kBlockSize, b.format, b.codes + j * kBlockSize);
    specials.nan |= r.nan;
    specials.pos_inf |= r.pos_inf;
    specials.neg_inf |= r.neg_inf;
    specials.all_neg_zero = specials.all_neg_zero && r.all_neg_zero;
    if (!nan_scale) {
      const __int128 sum = static_cast<__int128>(r.pos) - static_cast<__int128>(r.neg);
      acc.add(sum,
              q + static_cast<int>(a.scales[j]) + static_cast<int>(b.scales[j]) - 2 * kScaleBias);
    }
  }
  if (nan_scale || specials.nan || (specials.pos_inf && specials.neg_inf))
    return std::numeric_limits<float>::quiet_NaN();
  if (specials.pos_inf) return INFINITY;
  if (specials.neg_inf) return -INFINITY;
  const float v = acc.round();
  if (v == 0.0f && n > 0 && specials.all_neg_zero) return -0.0f;
  return v;
}

}  // namespace dmx
