#include <dmx/rtl.h>

#include <cstdio>
#include <sstream>

#include "Vmx_dot_unit.h"
#include "verilated.h"
#include "verilated_vcd_c.h"

namespace dmx::rtl {

int unit_stages() { return DMX_RTL_STAGES; }

struct RtlUnit::Impl {
  VerilatedContext context;
  std::unique_ptr<Vmx_dot_unit> top;
  std::unique_ptr<VerilatedVcdC> vcd;
  uint64_t time = 0;

  void eval_and_dump() {
    top->eval();
    if (vcd) vcd->dump(time);
    ++time;
  }
};

RtlUnit::RtlUnit(const std::string& vcd_path) : impl_(new Impl) {
  impl_->context.traceEverOn(!vcd_path.empty());
  impl_->top = std::make_unique<Vmx_dot_unit>(&impl_->context, "mx_dot_unit");
  if (!vcd_path.empty()) {
    impl_->vcd = std::make_unique<VerilatedVcdC>();
    impl_->top->trace(impl_->vcd.get(), 99);
    impl_->vcd->open(vcd_path.c_str());
  }
  reset();
}

RtlUnit::~RtlUnit() {
  if (impl_->vcd) impl_->vcd->close();
  impl_->top->final();
}

void RtlUnit::reset() {
  Vmx_dot_unit& t = *impl_->top;
  t.in_valid = 0;
  t.out_ready = 0;
  t.rst_n = 0;
  for (int i = 0; i < 2; ++i) {
    t.clk = 0;
    impl_->eval_and_dump();
    t.clk = 1;
    impl_->eval_and_dump();
  }
  t.rst_n = 1;
  t.clk = 0;
  impl_->eval_and_dump();
}

namespace {
void set_codes(VlWide<8>& wide, const std::array<uint8_t, kBlockSize>& codes) {
  for (int w = 0; w < 8; ++w)
    wide[w] = uint32_t(codes[4 * w]) | uint32_t(codes[4 * w + 1]) << 8 |
              uint32_t(codes[4 * w + 2]) << 16 | uint32_t(codes[4 * w + 3]) << 24;
}
}  // namespace

CycleResult RtlUnit::cycle(const BlockStep* in, bool out_ready) {
  Vmx_dot_unit& t = *impl_->top;
  t.clk = 0;
  t.out_ready = out_ready;
  t.in_valid = in != nullptr;
  if (in) {
    t.fmt_a = in->raw_fmt_a != 0xFF ? in->raw_fmt_a : uint8_t(in->fmt_a);
    t.fmt_b = in->raw_fmt_b != 0xFF ? in->raw_fmt_b : uint8_t(in->fmt_b);
    t.scale_a = in->scale_a;
    t.scale_b = in->scale_b;
    set_codes(t.codes_a, in->codes_a);
    set_codes(t.codes_b, in->codes_b);
    t.acc_in = in->acc_in;
    t.tag_in = in->tag;
  }
  impl_->eval_and_dump();
  CycleResult r;
  r.in_ready = t.in_ready;
  r.accepted = in != nullptr && t.in_ready;
  r.out_valid = t.out_valid;
  r.produced = t.out_valid && out_ready;
  r.acc_out = t.acc_out;
  r.tag_out = t.tag_out;
  t.clk = 1;
  impl_->eval_and_dump();
  ++cycles_;
  return r;
}

uint32_t golden_step(const BlockStep& s) {
  const float r =
      dot_block(s.fmt_a, s.scale_a, s.codes_a.data(), s.fmt_b, s.scale_b, s.codes_b.data());
  const float acc = fp32_from_bits(s.acc_in);
  return fp32_bits(acc + r);
}

void golden_steps(const BlockStep* steps, size_t n, uint32_t* out) {
  for (size_t i = 0; i < n; ++i) out[i] = golden_step(steps[i]);
}

std::string describe(const BlockStep& s) {
  std::ostringstream o;
  char buf[8];
  o << "fmt_a=" << format_name(s.fmt_a) << " fmt_b=" << format_name(s.fmt_b);
  if (s.raw_fmt_a != 0xFF || s.raw_fmt_b != 0xFF)
    o << " (raw selects " << int(s.raw_fmt_a) << "," << int(s.raw_fmt_b) << ")";
  o << " scale_a=0x" << std::hex << int(s.scale_a) << " scale_b=0x" << int(s.scale_b)
    << " acc_in=0x" << s.acc_in << " tag=" << std::dec << s.tag << " codes_a=";
  for (uint8_t c : s.codes_a) {
    std::snprintf(buf, sizeof buf, "%02x", c);
    o << buf;
  }
  o << " codes_b=";
  for (uint8_t c : s.codes_b) {
    std::snprintf(buf, sizeof buf, "%02x", c);
    o << buf;
  }
  return o.str();
}

}  // namespace dmx::rtl
