// Cycle-level model of rtl/mx_dot_unit.v: `stages` register slices, each of which loads when it is
// empty or its content moves on (mx_pipe_stage.v); an accepted issue reaches the outputs after
// `stages` edges counting the accepting one.
#include <dmx/sim_unit.h>

#include <cmath>
#include <stdexcept>

namespace dmx::sim {

uint32_t unit_result(const UnitInputs& in) {
  const float dot =
      dot_block(in.fmt_a, in.scale_a, in.codes_a.data(), in.fmt_b, in.scale_b, in.codes_b.data());
  const float sum = fp32_from_bits(in.acc_in) + dot;  // one FP32 RNE add (-ffp-contract=off)
  if (std::isnan(sum)) return 0x7FC00000u;
  return fp32_bits(sum);
}

MxDotUnitModel::MxDotUnitModel(int stages, bool compute)
    : stages_(stages), compute_(compute), slots_(stages > 0 ? stages : 1) {
  if (stages < 1) throw std::invalid_argument("MxDotUnitModel: stages must be >= 1");
}

void MxDotUnitModel::reset() {
  for (Slot& s : slots_) s = Slot{};
}

// One edge: from the output backwards, a slice loads from the one before it when it is ready
// (empty, or its own content moves on); a slice that is not ready holds.
void MxDotUnitModel::edge(const Slot& in, bool out_ready) {
  bool ready = !slots_[stages_ - 1].valid || out_ready;
  for (int i = stages_ - 1; i >= 0; --i) {
    const bool ready_before = i > 0 ? (!slots_[i - 1].valid || ready) : false;
    if (ready) slots_[i] = i > 0 ? slots_[i - 1] : in;
    if (i > 0) ready = ready_before;
  }
}

bool MxDotUnitModel::clock(const UnitInputs& in) {
  const bool accept = in.in_valid && in_ready(in.out_ready);
  Slot s;
  s.valid = in.in_valid;
  if (accept) {
    s.tag = in.tag_in;
    s.acc = compute_ ? unit_result(in) : 0;
  }
  edge(s, in.out_ready);
  return accept;
}

bool MxDotUnitModel::clock_timing(bool in_valid, uint16_t tag, bool out_ready) {
  const bool accept = in_valid && in_ready(out_ready);
  Slot s;
  s.valid = in_valid;
  s.tag = in_valid ? tag : 0;
  edge(s, out_ready);
  return accept;
}

}  // namespace dmx::sim
