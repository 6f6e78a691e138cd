// libFuzzer target: dmx-search's checkpoint.json must parse or fail with a CheckpointError.
#include <cstdint>
#include <string>

#include "dmx/quant/search_checkpoint.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const auto ck = dmx::quant::parse_search_checkpoint(text, "fuzz", "", 0, 1000);
    if (ck.theta.size() != ck.momentum.size()) __builtin_trap();
    // What is accepted must write back to an equal checkpoint.
    const auto again = dmx::quant::parse_search_checkpoint(
        dmx::quant::search_checkpoint_json(ck), "fuzz", ck.fingerprint, ck.theta.size(), 1000);
    if (again.theta != ck.theta || again.momentum != ck.momentum || again.step != ck.step)
      __builtin_trap();
  } catch (const dmx::quant::CheckpointError&) {
  }
  return 0;
}
