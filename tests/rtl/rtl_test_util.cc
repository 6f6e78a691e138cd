#include "rtl_test_util.h"

#include <cmath>
#include <cstdlib>
#include <sstream>

namespace dmx::rtl::test {

uint64_t env_u64(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  return std::strtoull(v, nullptr, 0);
}

const char* dist_name(Dist d) {
  switch (d) {
    case Dist::kGaussian:
      return "gaussian";
    case Dist::kRandomBits:
      return "random-bits";
    case Dist::kTieHeavy:
      return "tie-heavy";
    case Dist::kExtremeScales:
      return "extreme-scales";
    case Dist::kCancellation:
      return "cancellation";
  }
  return "?";
}

bool same_fp32(uint32_t a, uint32_t b) {
  const bool a_nan = (a & 0x7F800000u) == 0x7F800000u && (a & 0x7FFFFFu);
  const bool b_nan = (b & 0x7F800000u) == 0x7F800000u && (b & 0x7FFFFFu);
  return (a_nan && b_nan) || a == b;
}

uint8_t StepGenerator::random_code(MxFormat f) {
  return uint8_t(rng_() & ((1u << format_info(f).bits) - 1));
}

// A code whose magnitude is a power of two (or zero): sums of such products have long runs of
// zero bits, so the block rounding and the accumulation land on exact ties far more often.
uint8_t StepGenerator::power_of_two_code(MxFormat f) {
  const FormatInfo& fi = format_info(f);
  if (rng_() % 4 == 0) return uint8_t((rng_() & 1) << (fi.bits - 1));  // +-0
  if (fi.is_int) {
    const int v = 1 << (rng_() % 7);
    return uint8_t(rng_() & 1 ? -v : v);
  }
  const uint32_t sign = uint32_t(rng_() & 1) << (fi.bits - 1);
  const int max_e = fi.emax + fi.bias;  // largest exponent field of a finite value
  int e = int(rng_() % (max_e + 1));
  uint32_t m = 0;
  if (e == 0) m = 1u << (rng_() % fi.mbits);           // a subnormal power of two
  if (e == (1 << fi.ebits) - 1 && fi.has_inf) e -= 1;  // keep E5M2 finite here
  return uint8_t(sign | uint32_t(e) << fi.mbits | m);
}

uint32_t StepGenerator::random_acc() {
  switch (rng_() % 4) {
    case 0:
      return 0x80000000u;  // -0: acc_out == r
    case 1:
      return uint32_t(rng_());  // any pattern, NaN and Inf included
    default: {
      std::normal_distribution<float> n(0.f, 1.f);
      return fp32_bits(std::ldexp(n(rng_), int(rng_() % 61) - 30));
    }
  }
}

uint32_t StepGenerator::extreme_acc() {
  static const uint32_t kExtremes[] = {0x00000000u, 0x80000000u, 0x00000001u, 0x80000001u,
                                       0x00800000u, 0x80800000u, 0x007FFFFFu, 0x7F7FFFFFu,
                                       0xFF7FFFFFu, 0x7F800000u, 0xFF800000u, 0x7FC00000u,
                                       0x7F800001u, 0xFFC00001u, 0x7F000000u, 0x3F800000u};
  if (rng_() % 3 == 0) return random_acc();
  return kExtremes[rng_() % (sizeof kExtremes / sizeof kExtremes[0])];
}

void StepGenerator::gaussian_operand(MxFormat f, uint8_t& scale,
                                     std::array<uint8_t, kBlockSize>& codes) {
  std::normal_distribution<float> n(0.f, 1.f);
  float v[kBlockSize];
  const int block_exp = int(rng_() % 41) - 20;
  const bool heavy_tail = rng_() & 1;
  for (float& x : v) {
    x = std::ldexp(n(rng_), block_exp);
    if (heavy_tail) x *= std::exp2(2.f * n(rng_));
  }
  const MxBlock b = quantize_block(f, v);
  scale = b.scale;
  codes = b.codes;
}

BlockStep StepGenerator::next(Dist d) {
  BlockStep s;
  s.fmt_a = fa_;
  s.fmt_b = fb_;
  switch (d) {
    case Dist::kGaussian:
      gaussian_operand(fa_, s.scale_a, s.codes_a);
      gaussian_operand(fb_, s.scale_b, s.codes_b);
      s.acc_in = rng_() % 4 == 0 ? 0x80000000u : random_acc();
      break;
    case Dist::kRandomBits:
      for (auto& c : s.codes_a) c = random_code(fa_);
      for (auto& c : s.codes_b) c = random_code(fb_);
      if (rng_() & 1) {
        s.scale_a = uint8_t(rng_());
        s.scale_b = uint8_t(rng_());
      } else {
        s.scale_a = uint8_t(107 + rng_() % 41);
        s.scale_b = uint8_t(107 + rng_() % 41);
      }
      s.acc_in = random_acc();
      break;
    case Dist::kTieHeavy: {
      for (auto& c : s.codes_a) c = power_of_two_code(fa_);
      for (auto& c : s.codes_b) c = power_of_two_code(fb_);
      s.scale_a = uint8_t(97 + rng_() % 61);
      s.scale_b = uint8_t(97 + rng_() % 61);
      // Pick acc so that r sits exactly half an ulp of acc above a representable value: the final
      // addition is then a tie (with a random mantissa parity to exercise both directions).
      const float r = dot_block(fa_, s.scale_a, s.codes_a.data(), fb_, s.scale_b, s.codes_b.data());
      const uint32_t rb = fp32_bits(r);
      if (std::isfinite(r) && r != 0.f && rng_() % 4 != 0) {
        int e;
        std::frexp(r, &e);
        // Lowest set bit of r's significand, as a power of two.
        const uint32_t exp_field = (rb >> 23) & 0xFF;
        const uint32_t sig = exp_field ? ((rb & 0x7FFFFFu) | 0x800000u) : (rb & 0x7FFFFFu);
        const int lsb = __builtin_ctz(sig) + (exp_field ? int(exp_field) : 1) - 150;
        const int acc_exp = lsb + 1 + 23;  // acc's ulp is 2^(lsb+1)
        if (acc_exp <= 127 && acc_exp >= -126) {
          const float mant = 1.f + std::ldexp(float(rng_() & 0x7FFFFF), -23);
          float acc = std::ldexp(mant, acc_exp);
          if (rng_() & 1) acc = -acc;
          s.acc_in = fp32_bits(acc);
          break;
        }
      }
      s.acc_in = random_acc();
      break;
    }
    case Dist::kExtremeScales: {
      static const uint8_t kScales[] = {0,   1,   2,   3,   4,   10,  20,  60,  100, 120, 126,
                                        127, 128, 134, 150, 200, 240, 250, 252, 253, 254, 255};
      const int ns = sizeof kScales;
      s.scale_a = rng_() % 8 == 0 ? uint8_t(rng_()) : kScales[rng_() % ns];
      s.scale_b = rng_() % 8 == 0 ? uint8_t(rng_()) : kScales[rng_() % ns];
      // Mostly large codes, so overflow to Inf and deep underflow both show up.
      const uint8_t max_a = encode_element(fa_, format_info(fa_).max_normal);
      const uint8_t max_b = encode_element(fb_, format_info(fb_).max_normal);
      const uint32_t sign_a = 1u << (format_info(fa_).bits - 1);
      const uint32_t sign_b = 1u << (format_info(fb_).bits - 1);
      const int mode = int(rng_() % 3);
      for (int i = 0; i < kBlockSize; ++i) {
        if (mode == 0) {
          s.codes_a[i] = max_a;
          s.codes_b[i] = max_b;
        } else if (mode == 1) {
          s.codes_a[i] = uint8_t(max_a | (rng_() % 8 == 0 ? sign_a : 0));
          s.codes_b[i] = rng_() % 2 ? max_b : random_code(fb_);
        } else {
          s.codes_a[i] = random_code(fa_);
          s.codes_b[i] = random_code(fb_);
        }
        if (format_info(fa_).is_int && s.codes_a[i] == max_a && rng_() % 4 == 0)
          s.codes_a[i] = 0x80;  // INT8 -128
      }
      s.acc_in = extreme_acc();
      break;
    }
    case Dist::kCancellation: {
      gaussian_operand(fa_, s.scale_a, s.codes_a);
      gaussian_operand(fb_, s.scale_b, s.codes_b);
      const FormatInfo& ia = format_info(fa_);
      for (int i = kBlockSize / 2; i < kBlockSize; ++i) {
        const uint8_t c = s.codes_a[i - kBlockSize / 2];
        // -c: the sign bit for floats; two's complement for INT8 (-(-128) is kept as -127).
        s.codes_a[i] =
            ia.is_int ? uint8_t(c == 0x80 ? 0x81 : -c) : uint8_t(c ^ (1u << (ia.bits - 1)));
        s.codes_b[i] = s.codes_b[i - kBlockSize / 2];
      }
      const int redraw = int(rng_() % 4);  // 0: the sum is exactly zero
      for (int k = 0; k < redraw; ++k) {
        const int lane = int(rng_() % kBlockSize);
        if (rng_() & 1)
          s.codes_a[lane] = uint8_t(s.codes_a[lane] ^ 1);  // one quantum of one element
        else
          s.codes_b[lane] = random_code(fb_);
      }
      const float r = dot_block(fa_, s.scale_a, s.codes_a.data(), fb_, s.scale_b, s.codes_b.data());
      if (std::isfinite(r) && rng_() % 2 == 0) {
        // acc_in a few ulps from -r: the accumulation cancels as well.
        s.acc_in = fp32_bits(-r) ^ uint32_t(rng_() % 8);
      } else {
        s.acc_in = rng_() % 2 ? 0x80000000u : random_acc();
      }
      break;
    }
  }
  return s;
}

void StepGenerator::fill(BlockStep* out, size_t n, uint64_t first) {
  for (size_t i = 0; i < n; ++i) out[i] = next(Dist((first + i) % kNumDists));
}

std::string replay_into_waveform(const BlockStep& s) {
  const char* path = std::getenv("DMX_RTL_VCD");
  if (!path || !*path) return "set DMX_RTL_VCD=<file.vcd> to dump this case's waveform";
  RtlUnit unit(path);
  for (int c = 0; c < 4 * unit_stages() + 4; ++c) {
    unit.cycle(c == 0 ? &s : nullptr, true);
  }
  return std::string("waveform of this case written to ") + path;
}

void StreamChecker::fail(const BlockStep& s, const std::string& what) {
  ++mismatches_;
  if (failures_.size() < 5) {
    failures_.push_back(what + "\n  step: " + describe(s) + "\n  " +
                        (failures_.empty() ? replay_into_waveform(s) : std::string()));
  }
}

void StreamChecker::run(const std::function<bool(BlockStep&)>& source) {
  std::uniform_real_distribution<double> u(0.0, 1.0);
  BlockStep pending;
  bool have_pending = source(pending);
  if (have_pending) pending.tag = next_tag_++;
  bool prev_stalled = false;  // out_valid && !out_ready last cycle
  uint32_t prev_acc = 0;
  uint16_t prev_tag = 0;
  int idle_cycles = 0;
  while ((have_pending || !in_flight_.empty()) && mismatches_ < 5) {
    const bool drive = have_pending && (p_valid_ >= 1.0 || u(rng_) < p_valid_);
    const bool ready = p_ready_ >= 1.0 || u(rng_) < p_ready_;
    const CycleResult r = unit_.cycle(drive ? &pending : nullptr, ready);
    ++cycles_;
    if (prev_stalled && (!r.out_valid || r.acc_out != prev_acc || r.tag_out != prev_tag)) {
      fail(in_flight_.empty() ? pending : in_flight_.front().first,
           "output changed or dropped while stalled (out_valid && !out_ready)");
    }
    prev_stalled = r.out_valid && !ready;
    prev_acc = r.acc_out;
    prev_tag = r.tag_out;
    if (r.produced) {
      if (in_flight_.empty()) {
        fail(pending,
             "output without a pending input (duplicate?), tag " + std::to_string(r.tag_out));
      } else {
        const auto [step, expected] = in_flight_.front();
        in_flight_.pop_front();
        ++checked_;
        if (r.tag_out != step.tag) {
          fail(step, "tag " + std::to_string(r.tag_out) + " where " + std::to_string(step.tag) +
                         " was expected (lost, duplicated or reordered)");
        } else if (!same_fp32(r.acc_out, expected)) {
          char buf[96];
          std::snprintf(buf, sizeof buf, "acc_out 0x%08x, golden 0x%08x", r.acc_out, expected);
          fail(step, buf);
        }
      }
    }
    if (r.accepted) {
      in_flight_.emplace_back(pending, golden_step(pending));
      have_pending = source(pending);
      if (have_pending) pending.tag = next_tag_++;
    }
    idle_cycles = (r.accepted || r.produced) ? 0 : idle_cycles + 1;
    if (idle_cycles > 1000) {
      fail(in_flight_.empty() ? pending : in_flight_.front().first,
           "no progress for 1000 cycles (deadlock)");
      break;
    }
    if (cycles_ > 1000 && in_flight_.size() > size_t(unit_stages()) + 1) {
      fail(in_flight_.front().first, "more blocks in flight than pipeline stages");
    }
  }
}

}  // namespace dmx::rtl::test
