// libFuzzer target: an architecture config must parse or fail with a ConfigError naming the key;
// an accepted one must tile a GEMM without fault.
#include <cstdint>
#include <string>

#include "dmx/sim.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto a =
        dmx::sim::parse_arch_json(std::string(reinterpret_cast<const char*>(data), size), "fuzz");
    const auto t = dmx::sim::choose_tiling(a, {37, 300, 1000});
    if (t.mt < 1 || t.nt < 1 || t.kbt < 1) __builtin_trap();
    (void)a.fingerprint();
  } catch (const dmx::sim::ConfigError&) {
  }
  return 0;
}
