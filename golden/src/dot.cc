// Dot products: dot_exact (one rounding) and dot_blocked (the accumulation contract).
#include <cmath>
#include <limits>
#include <stdexcept>

#include "dmx/golden.h"

namespace dmx {
namespace {

// IEEE special-value bookkeeping of a sum of products.
struct Specials {
  bool nan = false;
  bool pos_inf = false;
  bool neg_inf = false;
  void add_product(const ElementValue& a, const ElementValue& b) {
    if (a.is_nan || b.is_nan) {
      nan = true;
      return;
    }
    if (a.is_inf || b.is_inf) {
      const bool other_zero = (a.is_inf ? (!b.is_inf && b.magnitude == 0)
                                        : (a.magnitude == 0));
      if (other_zero) {
        nan = true;  // Inf * 0
        return;
      }
      (a.negative != b.negative ? neg_inf : pos_inf) = true;
    }
  }
  bool any() const { return nan || pos_inf || neg_inf; }
  float value() const {
    if (nan || (pos_inf && neg_inf)) return std::numeric_limits<float>::quiet_NaN();
    return pos_inf ? INFINITY : -INFINITY;
  }
};

// Exact sum of one block's products in units of 2^(qa + qb); |sum| < 2^70.
struct BlockSum {
  __int128 sum = 0;
  bool all_neg_zero = true;  // every product is -0 (decides the sign of an exact zero)
  Specials specials;
};

BlockSum block_sum(MxFormat fa, const uint8_t* ca, MxFormat fb, const uint8_t* cb) {
  BlockSum r;
  for (int i = 0; i < kBlockSize; ++i) {
    const ElementValue a = decode_element_exact(fa, ca[i]);
    const ElementValue b = decode_element_exact(fb, cb[i]);
    r.specials.add_product(a, b);
    if (a.is_nan || b.is_nan || a.is_inf || b.is_inf) continue;
    const bool neg = a.negative != b.negative;
    const __int128 p = static_cast<__int128>(static_cast<uint64_t>(a.magnitude) * b.magnitude);
    if (p != 0 || !neg) r.all_neg_zero = false;
    r.sum += neg ? -p : p;
  }
  return r;
}

// A two's-complement fixed-point accumulator wide enough for any MX dot product exactly:
// block sums reach 2^70 at exponents from -286 (E5M2 quanta with the smallest scales) to
// +252, and 2^40 blocks add another 40 bits.
class WideAccumulator {
 public:
  static constexpr int kLimbs = 12;   // 768 bits
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
  if (sa == kScaleNaN || sb == kScaleNaN) return std::numeric_limits<float>::quiet_NaN();
  const BlockSum r = block_sum(fa, ca, fb, cb);
  if (r.specials.any()) return r.specials.value();
  if (r.sum == 0) return r.all_neg_zero ? -0.0f : 0.0f;
  const int exp = format_info(fa).quantum_exp + format_info(fb).quantum_exp +
                  static_cast<int>(sa) + static_cast<int>(sb) - 2 * kScaleBias;
  const bool neg = r.sum < 0;
  const unsigned __int128 mag = neg ? static_cast<unsigned __int128>(-r.sum)
                                    : static_cast<unsigned __int128>(r.sum);
  return round_to_fp32(neg, mag, exp);
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

float dot_exact(const MxVector& a, const MxVector& b, size_t n) {
  check_length(n);
  const int q = format_info(a.format).quantum_exp + format_info(b.format).quantum_exp;
  WideAccumulator acc;
  Specials specials;
  bool nan_scale = false;
  bool all_neg_zero = true;
  for (size_t j = 0; j < n / kBlockSize; ++j) {
    if (a.scales[j] == kScaleNaN || b.scales[j] == kScaleNaN) nan_scale = true;
    const BlockSum r = block_sum(a.format, a.codes + j * kBlockSize, b.format,
                                 b.codes + j * kBlockSize);
    if (r.specials.nan) specials.nan = true;
    specials.pos_inf |= r.specials.pos_inf;
    specials.neg_inf |= r.specials.neg_inf;
    all_neg_zero = all_neg_zero && r.all_neg_zero;
    if (!nan_scale)
      acc.add(r.sum, q + static_cast<int>(a.scales[j]) + static_cast<int>(b.scales[j]) -
                         2 * kScaleBias);
  }
  if (nan_scale) return std::numeric_limits<float>::quiet_NaN();
  if (specials.any()) return specials.value();
  const float v = acc.round();
  if (v == 0.0f && n > 0 && all_neg_zero) return -0.0f;
  return v;
}

}  // namespace dmx
