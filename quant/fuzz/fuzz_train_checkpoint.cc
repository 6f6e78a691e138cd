// libFuzzer target: dmx-train's checkpoint.safetensors must parse or fail with one error line
// (SafetensorsError from the container, CheckpointError from the train layout).
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>

#include "dmx/quant/train_checkpoint.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto header = dmx::quant::parse_safetensors(data, size, "fuzz");
    const auto ck = dmx::quant::parse_train_checkpoint(header, "fuzz");
    // What is accepted is consistent: every view lies in the input and matches its parameter.
    if (ck.step < 0 || static_cast<int64_t>(ck.log.size()) > ck.step) __builtin_trap();
    for (const auto& [name, p] : ck.params) {
      if (p.param.data < data || p.param.data + p.param.nbytes > data + size) __builtin_trap();
      if (p.has_adam_state && (p.exp_avg.nbytes != p.param.nbytes ||
                               p.exp_avg_sq.nbytes != p.param.nbytes || p.adam_step > ck.step))
        __builtin_trap();
      float sum = 0;  // touch every byte, as a resume copies them
      for (size_t i = 0; i + 4 <= p.param.nbytes; i += 4) {
        float f;
        std::memcpy(&f, p.param.data + i, 4);
        sum += std::fabs(f);
      }
      (void)sum;
    }
  } catch (const dmx::quant::SafetensorsError&) {
  } catch (const dmx::quant::CheckpointError&) {
  }
  return 0;
}
