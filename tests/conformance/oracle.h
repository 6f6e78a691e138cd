// Independent oracles for the conformance suite. Nothing here calls golden's arithmetic: values
// come from the format definitions (the format table of golden/README.md) evaluated in double, rounding from a
// nearest-neighbour search over the whole grid, and dot products from GMP rationals.
#pragma once

#include <gmpxx.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

namespace oracle {

// The format table as golden/README.md states it, typed in independently of golden.
struct Spec {
  int ebits, mbits, bias;
  bool ieee_specials;  // E5M2: all-ones exponent is Inf/NaN
  bool e4m3_nan;       // E4M3: only S.1111.111 is NaN
  bool is_int;
  double max_normal, min_subnormal;
};
inline Spec spec(int fmt) {
  switch (fmt) {
    case 0: return {4, 3, 7, false, true, false, 448.0, std::ldexp(1.0, -9)};
    case 1: return {5, 2, 15, true, false, false, 57344.0, std::ldexp(1.0, -16)};
    case 2: return {3, 2, 3, false, false, false, 28.0, 0.0625};
    case 3: return {2, 3, 1, false, false, false, 7.5, 0.125};
    case 4: return {2, 1, 1, false, false, false, 6.0, 0.5};
    default: return {0, 0, 0, false, false, true, 127.0 / 64.0, 1.0 / 64.0};
  }
}
inline int code_count(int fmt) {
  const Spec s = spec(fmt);
  return s.is_int ? 256 : 1 << (1 + s.ebits + s.mbits);
}

// Code -> value by the textbook formula: (-1)^S * 2^(E-bias) * (1 + M/2^m), or subnormal.
inline double decode(int fmt, uint32_t code) {
  const Spec s = spec(fmt);
  if (s.is_int) return static_cast<int8_t>(code) / 64.0;
  const int bits = 1 + s.ebits + s.mbits;
  const bool neg = (code >> (bits - 1)) & 1;
  const int E = (code >> s.mbits) & ((1 << s.ebits) - 1);
  const int M = code & ((1 << s.mbits) - 1);
  const int top = (1 << s.ebits) - 1;
  if (s.ieee_specials && E == top)
    return M == 0 ? (neg ? -INFINITY : INFINITY) : std::numeric_limits<double>::quiet_NaN();
  if (s.e4m3_nan && E == top && M == (1 << s.mbits) - 1)
    return std::numeric_limits<double>::quiet_NaN();
  double v = E == 0 ? std::ldexp(M / std::ldexp(1.0, s.mbits), 1 - s.bias)
                    : std::ldexp(1.0 + M / std::ldexp(1.0, s.mbits), E - s.bias);
  return neg ? -v : v;
}

// Round x (a double holding an exact value) to the format by searching the grid of all finite
// non-negative codes: nearest value, ties to the even code. `ovf`: FP8 overflow to Inf/NaN.
class Encoder {
 public:
  explicit Encoder(int fmt) : fmt_(fmt), s_(spec(fmt)) {
    for (int c = 0; c < code_count(fmt); ++c) {
      if (s_.is_int ? (c >= 128) : ((c >> (s_.ebits + s_.mbits)) & 1)) continue;  // negatives
      const double v = decode(fmt, c);
      if (!std::isfinite(v)) continue;
      grid_.push_back({v, static_cast<uint32_t>(c)});
    }
    std::sort(grid_.begin(), grid_.end(), [](auto& a, auto& b) { return a.v < b.v; });
    // A virtual value one ulp past max, with the parity the next code would have: the rounding
    // threshold where OFP8's overflow begins.
    const Pt& top = grid_.back();
    const Pt& below = grid_[grid_.size() - 2];
    virt_ = {top.v + (top.v - below.v), top.code + 1};
  }
  uint8_t encode(double x, bool ovf = false, bool allow_m128 = false) const {
    const int bits = s_.is_int ? 8 : 1 + s_.ebits + s_.mbits;
    const bool neg = std::signbit(x);
    const uint32_t sign = s_.is_int ? 0 : (neg ? 1u << (bits - 1) : 0u);
    const bool fp8 = bits == 8 && !s_.is_int;
    if (std::isnan(x)) return fp8 ? 0x7f : grid_.back().code;
    double a = std::fabs(x);
    uint32_t mag_code;
    bool overflow = false;
    if (std::isinf(x)) {
      overflow = true;
      mag_code = grid_.back().code;
    } else {
      // candidates: grid plus the virtual point
      auto it = std::lower_bound(grid_.begin(), grid_.end(), a,
                                 [](const Pt& p, double v) { return p.v < v; });
      Pt lo, hi;
      if (it == grid_.end()) {
        lo = grid_.back();
        hi = virt_;
      } else if (it->v == a) {
        lo = hi = *it;
      } else {
        hi = *it;
        lo = *(it - 1);
      }
      Pt pick;
      if (lo.code == hi.code) {
        pick = lo;
      } else {
        const double dl = a - lo.v, dh = hi.v - a;
        pick = dl < dh ? lo : dh < dl ? hi : ((lo.code & 1) == 0 ? lo : hi);
      }
      if (a > virt_.v) pick = virt_;
      overflow = pick.code == virt_.code && pick.v == virt_.v;
      mag_code = overflow ? grid_.back().code : pick.code;
    }
    if (s_.is_int) {  // positive INT8 codes are the integers q themselves
      if (overflow && neg && allow_m128) return 0x80;
      const int q = static_cast<int>(mag_code);
      return static_cast<uint8_t>(static_cast<int8_t>(neg ? -q : q));
    }
    if (overflow && ovf && fp8) {
      if (s_.ieee_specials) return static_cast<uint8_t>(sign | 0x7c);  // Inf
      return static_cast<uint8_t>(sign | 0x7f);                        // E4M3 NaN
    }
    return static_cast<uint8_t>(sign | mag_code);
  }

 private:
  struct Pt {
    double v;
    uint32_t code;
  };
  int fmt_;
  Spec s_;
  std::vector<Pt> grid_;
  Pt virt_;
};

// Exact rational -> FP32, round to nearest even, subnormals, overflow to Inf.
inline float round_rational(const mpq_class& q_in) {
  if (q_in == 0) return 0.0f;
  const bool neg = q_in < 0;
  mpq_class q = abs(q_in);
  // L = floor(log2 q): start from the bit lengths, then correct.
  long L = static_cast<long>(mpz_sizeinbase(q.get_num_mpz_t(), 2)) -
           static_cast<long>(mpz_sizeinbase(q.get_den_mpz_t(), 2));
  auto pow2 = [](long e) {
    mpq_class r(1);
    if (e >= 0)
      mpz_mul_2exp(r.get_num_mpz_t(), r.get_num_mpz_t(), e);
    else
      mpz_mul_2exp(r.get_den_mpz_t(), r.get_den_mpz_t(), -e);
    return r;
  };
  while (q < pow2(L)) --L;
  while (q >= pow2(L + 1)) ++L;
  const float inf = neg ? -INFINITY : INFINITY;
  if (L > 127) return inf;
  const long qe = std::max(L - 23, -149L);
  mpq_class scaled = q / pow2(qe);
  mpz_class m = scaled.get_num() / scaled.get_den();
  mpq_class rem = scaled - mpq_class(m);
  if (rem > mpq_class(1, 2) || (rem == mpq_class(1, 2) && mpz_odd_p(m.get_mpz_t()))) m += 1;
  // value = m * 2^qe; build it in double (exact: m <= 2^24) then narrow (exact or overflow).
  const double d = std::ldexp(m.get_d(), static_cast<int>(qe));
  if (d >= std::ldexp(1.0, 128)) return inf;
  const float f = static_cast<float>(d);
  return neg ? -f : f;
}

// Exact value of a finite double as a rational.
inline mpq_class exact(double d) {
  int e;
  const double m = std::frexp(d, &e);  // d = m * 2^e, |m| in [0.5, 1)
  const long long mi = static_cast<long long>(std::ldexp(m, 53));
  mpq_class r(mpz_class(static_cast<long>(mi)));
  const long sh = e - 53;
  if (sh >= 0)
    mpz_mul_2exp(r.get_num_mpz_t(), r.get_num_mpz_t(), sh);
  else
    mpz_mul_2exp(r.get_den_mpz_t(), r.get_den_mpz_t(), -sh);
  r.canonicalize();
  return r;
}

inline mpq_class pow2q(long e) {
  mpq_class r(1);
  if (e >= 0)
    mpz_mul_2exp(r.get_num_mpz_t(), r.get_num_mpz_t(), e);
  else
    mpz_mul_2exp(r.get_den_mpz_t(), r.get_den_mpz_t(), -e);
  return r;
}

inline uint32_t bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}
inline float from_bits(uint32_t b) {
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}
// Bit equality with all NaNs equal (the contract fixes NaN-ness, not the payload).
inline bool same(float a, float b) {
  if (std::isnan(a) && std::isnan(b)) return true;
  return bits(a) == bits(b);
}

}  // namespace oracle
