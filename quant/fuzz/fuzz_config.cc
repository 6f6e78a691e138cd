// libFuzzer target: config.json must parse or fail with a ConfigError, and an accepted config's
// tensor shapes and parameter count must be computable without overflow or fault.
#include <cstdint>
#include <string>

#include "dmx/quant/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto c =
        dmx::quant::parse_config(std::string(reinterpret_cast<const char*>(data), size), "fuzz");
    (void)dmx::quant::parameter_count(c);
    (void)dmx::quant::rope_inv_freq(c);
    (void)dmx::quant::config_to_json(c);
  } catch (const dmx::quant::ConfigError&) {
  }
  return 0;
}
