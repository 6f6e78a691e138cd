// libFuzzer target: a topology CSV must parse or fail with a ConfigError naming the line.
#include <cstdint>
#include <string>

#include "dmx/sim.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto w =
        dmx::sim::topology_workload(std::string(reinterpret_cast<const char*>(data), size), "fuzz");
    for (const auto& op : w.ops)
      if (op.shape.m < 1 || op.shape.n < 1 || op.shape.k < 1 || op.count < 1) __builtin_trap();
  } catch (const dmx::sim::ConfigError&) {
  }
  return 0;
}
