// libFuzzer target: a conformance vector file must parse or fail with a VectorFileError; every
// accepted vector must replay through golden without fault.
#include <cstdint>
#include <cstring>
#include <string>

#include "dmx/vectors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const dmx::VectorFile f =
        dmx::parse_vector_file(std::string(reinterpret_cast<const char*>(data), size), "fuzz");
    for (const auto& q : f.quantize) {
      float v[dmx::kBlockSize];
      std::memcpy(v, q.input_bits, sizeof v);
      (void)dmx::quantize_block(q.format, v, q.options);
    }
    for (const auto& d : f.dot) {
      const dmx::MxVector a{d.format_a, d.scales_a.data(), d.codes_a.data()};
      const dmx::MxVector b{d.format_b, d.scales_b.data(), d.codes_b.data()};
      (void)dmx::dot_blocked(a, b, size_t(dmx::kBlockSize) * d.blocks, 0.0f);
      (void)dmx::dot_exact(a, b, size_t(dmx::kBlockSize) * d.blocks);
    }
  } catch (const dmx::VectorFileError&) {
  }
  return 0;
}
