// libFuzzer target: a model config.json must parse or fail with a ConfigError; an accepted model
// must give prefill and decode workloads (bounded in size by the parser's limits).
#include <cstdint>
#include <string>

#include "dmx/sim.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace dmx::sim;
  try {
    const ModelShape m =
        parse_model_json(std::string(reinterpret_cast<const char*>(data), size), "fuzz");
    if (m.num_hidden_layers > 64) return 0;  // valid but slow to expand: keep executions fast
    (void)decoder_workload(m, {PhaseKind::Prefill, 300, 0, 2});
    (void)decoder_workload(m, {PhaseKind::Decode, 0, 1000, 3});
  } catch (const ConfigError&) {
  }
  return 0;
}
