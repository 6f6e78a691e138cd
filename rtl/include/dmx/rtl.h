// dMX RTL: a cycle-level C++ driver for the Verilated mx_dot_unit (rtl/mx_dot_unit.v).
//
// The unit computes one dot_blocked step per issue: acc_out = acc_in + dot_block(a, b) in FP32,
// bit-exact to golden. RtlUnit wraps the Verilated model (library dmx_rtl_vunit, built with the
// default parameters STAGES = DMX_RTL_STAGES, FORMATS = all six) and clocks it one cycle per call.
#pragma once

#include <dmx/golden.h>

#include <array>
#include <cstdint>
#include <memory>
#include <string>

namespace dmx::rtl {

// Pipeline depth of the Verilated default unit: a block accepted at one clock edge is on the
// outputs STAGES edges later.
int unit_stages();

// One block step: the unit's inputs for one issue.
struct BlockStep {
  MxFormat fmt_a = MxFormat::E4M3, fmt_b = MxFormat::E4M3;
  uint8_t scale_a = 127, scale_b = 127;
  std::array<uint8_t, kBlockSize> codes_a{}, codes_b{};
  uint32_t acc_in = 0x80000000u;  // FP32 bits (default -0)
  uint16_t tag = 0;
  uint8_t raw_fmt_a = 0xFF, raw_fmt_b = 0xFF;  // != 0xFF: drive this raw 3-bit select instead
};

// The unit's observable outputs in one cycle (sampled before the clock edge).
struct CycleResult {
  bool in_ready = false;
  bool accepted = false;  // in_valid && in_ready at the edge
  bool out_valid = false;
  bool produced = false;  // out_valid && out_ready at the edge
  uint32_t acc_out = 0;
  uint16_t tag_out = 0;
};

class RtlUnit {
 public:
  // vcd_path non-empty: dump a VCD waveform of every cycle to that file.
  explicit RtlUnit(const std::string& vcd_path = "");
  ~RtlUnit();
  RtlUnit(const RtlUnit&) = delete;
  RtlUnit& operator=(const RtlUnit&) = delete;

  // Holds rst_n low for two cycles; the pipeline is empty afterwards.
  void reset();
  // One clock cycle: drives `in` (nullptr: in_valid = 0) and out_ready, then clocks one edge.
  CycleResult cycle(const BlockStep* in, bool out_ready);
  uint64_t cycles() const { return cycles_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  uint64_t cycles_ = 0;
};

// The fast testbench's driver: the unit Verilated without tracing inside mx_dot_unit_fastsim.v (its
// inputs registered, one cycle of extra latency; class Vmx_dot_unit_fast), fed a whole array of
// steps at one block per cycle with out_ready held high, outputs collected into an array. No
// per-cycle callback, no handshake randomisation (StreamChecker + RtlUnit cover those).
class FastUnit {
 public:
  FastUnit();
  ~FastUnit();
  FastUnit(const FastUnit&) = delete;
  FastUnit& operator=(const FastUnit&) = delete;

  // Streams steps[0..n) back to back and drains the pipeline; out[i] receives step i's acc_out.
  // Tags are assigned here (i mod 2^16) and checked on the way out. Returns an empty string, or a
  // description of the first protocol error (in_ready low at full rate, a missing/extra/reordered
  // output); acc values are compared by the caller.
  std::string run(const BlockStep* steps, size_t n, uint32_t* out);
  uint64_t cycles() const { return cycles_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  uint64_t cycles_ = 0;
};

// The expected acc_out of one step from golden: acc_in + dot_block(...) in FP32 RNE.
uint32_t golden_step(const BlockStep& s);
// golden_step over an array (the fast testbench's batch check).
void golden_steps(const BlockStep* steps, size_t n, uint32_t* out);

// One line describing a step (formats, scales, codes in hex, acc), for failure messages.
std::string describe(const BlockStep& s);

}  // namespace dmx::rtl
