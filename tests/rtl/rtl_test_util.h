// Shared pieces of the RTL testbench: input generators and a streaming checker that drives the
// Verilated unit, compares every output bit for bit with golden and replays a failing case into a
// waveform when DMX_RTL_VCD names a file.
#pragma once

#include <dmx/golden.h>
#include <dmx/rtl.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace dmx::rtl::test {

// Environment knobs: DMX_RTL_STEPS (random block steps per format pair, default 20000),
// DMX_RTL_SEED (base seed, default 20240601), DMX_RTL_VCD (waveform file for a failing case).
uint64_t env_u64(const char* name, uint64_t fallback);

// Value distributions of the random block generator.
// kCancellation: Gaussian blocks whose second half repeats the first with the sign of a flipped, a
// few lanes then redrawn, so the exact sum is a small residual of large terms; acc_in often near
// -r.
enum class Dist { kGaussian, kRandomBits, kTieHeavy, kExtremeScales, kCancellation };
inline constexpr int kNumDists = 5;
const char* dist_name(Dist d);

class StepGenerator {
 public:
  StepGenerator(MxFormat fa, MxFormat fb, uint64_t seed) : fa_(fa), fb_(fb), rng_(seed) {}
  BlockStep next(Dist d);
  // Bulk stimulus: n steps, distribution i % kNumDists for the i-th (counted from `first`).
  void fill(BlockStep* out, size_t n, uint64_t first = 0);
  std::mt19937_64& rng() { return rng_; }

 private:
  void gaussian_operand(MxFormat f, uint8_t& scale, std::array<uint8_t, kBlockSize>& codes);
  uint8_t random_code(MxFormat f);
  uint8_t power_of_two_code(MxFormat f);
  uint32_t random_acc();
  uint32_t extreme_acc();
  MxFormat fa_, fb_;
  std::mt19937_64 rng_;
};

// Bit-for-bit equality, except that any two NaNs match: golden's NaN comes from C++ `acc + r`,
// whose payload choice between two NaN operands is up to the compiler.
bool same_fp32(uint32_t a, uint32_t b);

// Streams steps through an RtlUnit, checks each output (order, tag, acc bits, holding while
// stalled) and counts cycles. out_ready and in_valid follow the given probabilities.
class StreamChecker {
 public:
  explicit StreamChecker(RtlUnit& unit, uint64_t seed, double p_out_ready = 1.0,
                         double p_in_valid = 1.0)
      : unit_(unit), rng_(seed), p_ready_(p_out_ready), p_valid_(p_in_valid) {}
  // Runs until `source` returns false and the pipeline has drained. `source` fills the next step
  // (its tag is assigned here). Stops early after 5 mismatches.
  void run(const std::function<bool(BlockStep&)>& source);
  uint64_t steps_checked() const { return checked_; }
  uint64_t mismatches() const { return mismatches_; }
  uint64_t cycles() const { return cycles_; }
  const std::vector<std::string>& failures() const { return failures_; }

 private:
  void fail(const BlockStep& s, const std::string& what);
  RtlUnit& unit_;
  std::mt19937_64 rng_;
  double p_ready_, p_valid_;
  std::deque<std::pair<BlockStep, uint32_t>> in_flight_;
  uint64_t checked_ = 0, mismatches_ = 0, cycles_ = 0;
  uint16_t next_tag_ = 0;
  std::vector<std::string> failures_;
};

// Re-runs one step on a fresh unit with a VCD trace into DMX_RTL_VCD (if set); returns a note.
std::string replay_into_waveform(const BlockStep& s);

}  // namespace dmx::rtl::test
