// libFuzzer target: tokenizer.json must load or fail with a TokenizerError, never crash, and a
// loaded tokenizer must encode and decode a fixed text without faults.
#include <cstdint>
#include <string>

#include "dmx/quant/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto tok = dmx::quant::Tokenizer::from_json(
        std::string(reinterpret_cast<const char*>(data), size), "fuzz");
    const auto ids = tok.encode("hello 12 <|end|> w\xc3\xa9rld");
    (void)tok.decode(ids, false);
  } catch (const dmx::quant::TokenizerError&) {
  }
  return 0;
}
