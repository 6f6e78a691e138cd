// libFuzzer target: the safetensors header parser must accept or reject any byte string with a
// SafetensorsError, never crash, and every accepted view must lie inside the input.
#include <cstdint>
#include <cstdlib>

#include "dmx/quant/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto h = dmx::quant::parse_safetensors(data, size, "fuzz");
    for (const auto& t : h.tensors) {
      if (t.data < data || t.data + t.nbytes > data + size) std::abort();
      volatile uint8_t sink = 0;
      for (size_t i = 0; i < t.nbytes; ++i) sink ^= t.data[i];  // touch every byte (ASan checks)
    }
  } catch (const dmx::quant::SafetensorsError&) {
  }
  return 0;
}
