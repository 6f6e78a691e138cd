// The resumable state file of dmx-search (checkpoint.json): read and validated without LibTorch,
// so that the parser is tested and fuzzed on its own.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace dmx::quant {

class CheckpointError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// {"fingerprint": "...", "step": N, "theta": [bits...], "momentum": [bits...]}: theta and momentum
// hold FP32 bit patterns (so a resume is bit-exact).
struct SearchCheckpoint {
  std::string fingerprint;
  int step = 0;
  std::vector<uint32_t> theta, momentum;
};

std::string search_checkpoint_json(const SearchCheckpoint& ck);

// Parses `text`; a checkpoint of another search (fingerprint), with a step outside [0, steps], a
// number of offsets other than `params`, or non-finite values is refused with one line naming
// `origin`. An empty `fingerprint` or `params` == 0 skips that check (fuzzing, inspection).
SearchCheckpoint parse_search_checkpoint(const std::string& text, const std::string& origin,
                                         const std::string& fingerprint, size_t params, int steps);

}  // namespace dmx::quant
