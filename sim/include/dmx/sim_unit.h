// Cycle-level C++ model of the RTL unit `mx_dot_unit` (rtl/mx_dot_unit.v).
//
// Same ports, latency and valid/ready semantics as the Verilog; the arithmetic comes from golden
// (`dot_block` + one FP32 RNE add). tests/sim/test_unit_vs_rtl.cc proves it cycle- and bit-equal to
// the Verilated unit. The SystemC array (sim.h) is built from instances of this class.
#pragma once

#include <dmx/golden.h>

#include <array>
#include <cstdint>
#include <vector>

namespace dmx::sim {

// Inputs sampled at a rising clock edge (names follow the Verilog ports).
struct UnitInputs {
  bool in_valid = false;
  MxFormat fmt_a = MxFormat::E4M3;
  MxFormat fmt_b = MxFormat::E4M3;
  uint8_t scale_a = 127;
  uint8_t scale_b = 127;
  std::array<uint8_t, kBlockSize> codes_a{};
  std::array<uint8_t, kBlockSize> codes_b{};
  uint32_t acc_in = 0x80000000u;  // FP32 bits (-0: the neutral accumulator)
  uint16_t tag_in = 0;
  bool out_ready = true;
};

// The unit's result for one issue: acc_in + dot_block(...) in FP32 RNE, as golden defines it.
// NaN results are returned as the canonical quiet NaN 0x7FC00000 (the RTL emits that pattern).
uint32_t unit_result(const UnitInputs& in);

class MxDotUnitModel {
 public:
  // `stages`: pipeline depth == latency in cycles (an issue accepted at clock edge t is on the
  // outputs after edge t + stages - 1, i.e. `stages` edges counting the accepting one).
  // `compute`: false skips the arithmetic (timing-only use; handshake and tags are unchanged).
  explicit MxDotUnitModel(int stages, bool compute = true);

  int stages() const { return stages_; }
  void reset();  // rst_n low at an edge: every stage empties

  // Combinational outputs of the current state (before the next edge). Every register slice is
  // ready when empty or when the slice after it moves (rtl/mx_pipe_stage.v), so bubbles collapse.
  bool in_ready(bool out_ready) const {
    if (out_ready) return true;
    for (const Slot& s : slots_)
      if (!s.valid) return true;  // an empty slice downstream absorbs one shift
    return false;
  }
  bool out_valid() const { return slots_[stages_ - 1].valid; }
  uint32_t acc_out() const { return slots_[stages_ - 1].acc; }
  uint16_t tag_out() const { return slots_[stages_ - 1].tag; }

  // One rising clock edge with `in` sampled. Returns true when the input was accepted.
  bool clock(const UnitInputs& in);
  // Timing-only edge (no operands): accepts when in_valid && in_ready.
  bool clock_timing(bool in_valid, uint16_t tag, bool out_ready);

 private:
  struct Slot {
    bool valid = false;
    uint32_t acc = 0;
    uint16_t tag = 0;
  };
  void edge(const Slot& in, bool out_ready);

  int stages_;
  bool compute_;
  std::vector<Slot> slots_;  // slots_[0] takes the input, slots_[stages_-1] drives the outputs
};

}  // namespace dmx::sim
