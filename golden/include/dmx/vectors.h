// dMX golden: the reader of the conformance vector files (golden/vectors/README.md), so that any
// implementation replays them through one validated parser. A malformed line is a
// VectorFileError naming the file and the line; nothing is guessed.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "dmx/golden.h"

namespace dmx {

class VectorFileError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// `Q FORMAT RULE OVERFLOW NONFINITE INT8_MIN128 x0 .. x31 -> SCALE c0 .. c31`
struct QuantizeVector {
  MxFormat format = MxFormat::E4M3;
  QuantizeOptions options;
  uint32_t input_bits[kBlockSize] = {};  // FP32 bit patterns
  uint8_t scale = 0;
  uint8_t codes[kBlockSize] = {};
};

// `D FA FB NBLOCKS ACC_IN A sa.. ca.. B sb.. cb.. -> r_0 .. r_{n-1} BLOCKED EXACT`
struct DotVector {
  MxFormat format_a = MxFormat::E4M3, format_b = MxFormat::E4M3;
  int blocks = 0;
  uint32_t acc_in_bits = 0;
  std::vector<uint8_t> scales_a, codes_a, scales_b, codes_b;  // blocks, 32 x blocks
  std::vector<uint32_t> block_results_bits;                   // r_j, FP32 bits
  uint32_t blocked_bits = 0, exact_bits = 0;
};

// At most this many blocks in one dot vector (the committed files use 1 to 3).
inline constexpr int kMaxVectorBlocks = 4096;

struct VectorFile {
  std::vector<QuantizeVector> quantize;
  std::vector<DotVector> dot;
};

// Parses a whole vector file (either kind, or both mixed); `origin` names it in errors.
VectorFile parse_vector_file(const std::string& text, const std::string& origin);
// Reads and parses a file (a regular file of at most 64 MiB).
VectorFile load_vector_file(const std::string& path);

}  // namespace dmx
