// FastUnit: the full-rate batch driver of the untraced Verilated mx_dot_unit (see dmx/rtl.h).
#include <dmx/rtl.h>

#include <cstring>
#include <string>

#include "Vmx_dot_unit_fast.h"
#include "verilated.h"

namespace dmx::rtl {

struct FastUnit::Impl {
  VerilatedContext context;
  Vmx_dot_unit_fast top{&context, "mx_dot_unit"};
};

FastUnit::FastUnit() : impl_(new Impl) {
  Vmx_dot_unit_fast& t = impl_->top;
  t.in_valid = 0;
  t.out_ready = 1;
  t.rst_n = 0;
  for (int i = 0; i < 2; ++i) {
    t.clk = 0;
    t.eval();
    t.clk = 1;
    t.eval();
  }
  t.rst_n = 1;
  t.clk = 0;
  t.eval();
}

FastUnit::~FastUnit() { impl_->top.final(); }

namespace {
inline void set_codes(VlWide<8>& wide, const std::array<uint8_t, kBlockSize>& codes) {
  for (int w = 0; w < 8; ++w) {
    uint32_t v;
    std::memcpy(&v, codes.data() + 4 * w, 4);  // little-endian: code 4w in the low byte
    wide[w] = v;
  }
}
}  // namespace

std::string FastUnit::run(const BlockStep* steps, size_t n, uint32_t* out) {
  Vmx_dot_unit_fast& t = impl_->top;
  // mx_dot_unit_fastsim registers the inputs: one cycle more than the unit's latency.
  const size_t total = n + size_t(unit_stages()) + 1;
  size_t produced = 0;
  t.out_ready = 1;
  for (size_t c = 0; c < total; ++c) {
    // Falling edge: drive this cycle's inputs (clk low, so nothing is sampled yet).
    t.clk = 0;
    if (c < n) {
      const BlockStep& s = steps[c];
      t.in_valid = 1;
      t.fmt_a = s.raw_fmt_a != 0xFF ? s.raw_fmt_a : uint8_t(s.fmt_a);
      t.fmt_b = s.raw_fmt_b != 0xFF ? s.raw_fmt_b : uint8_t(s.fmt_b);
      t.scale_a = s.scale_a;
      t.scale_b = s.scale_b;
      set_codes(t.codes_a, s.codes_a);
      set_codes(t.codes_b, s.codes_b);
      t.acc_in = s.acc_in;
      t.tag_in = uint16_t(c);
    } else {
      t.in_valid = 0;
    }
    t.eval();
    if (!t.in_ready) return "in_ready low at full rate, cycle " + std::to_string(c);
    if (t.out_valid) {
      if (produced >= n)
        return "output without an input (duplicate?) at cycle " + std::to_string(c);
      if (t.tag_out != uint16_t(produced))
        return "tag " + std::to_string(t.tag_out) + " where " + std::to_string(uint16_t(produced)) +
               " was expected (lost or reordered)";
      out[produced++] = t.acc_out;
    }
    // Rising edge.
    t.clk = 1;
    t.eval();
  }
  cycles_ += total;
  if (produced != n)
    return std::to_string(produced) + " outputs for " + std::to_string(n) + " inputs";
  return std::string();
}

}  // namespace dmx::rtl
