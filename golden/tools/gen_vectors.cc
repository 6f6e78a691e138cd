// dmx-gen-vectors: writes the golden conformance vectors (golden/vectors/*.txt) so that other
// implementations (RTL, kernels, outside users) can run the same suite. Deterministic: fixed
// seeds, so re-running reproduces the committed files byte for byte.
// Usage: dmx-gen-vectors OUT_DIR
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "dmx/golden.h"
#include "dmx/util.h"

namespace {

using dmx::MxFormat;

const char* overflow_name(dmx::Overflow o) { return o == dmx::Overflow::SAT ? "SAT" : "OVF"; }

void hex_bytes(std::string& s, const uint8_t* p, size_t n) {
  char buf[4];
  for (size_t i = 0; i < n; ++i) {
    std::snprintf(buf, sizeof buf, " %02x", p[i]);
    s += buf;
  }
}
void hex_word(std::string& s, float x) {
  char buf[12];
  std::snprintf(buf, sizeof buf, " %08x", dmx::fp32_bits(x));
  s += buf;
}

// Inputs that exercise every rounding and scaling corner: Gaussians at random magnitudes,
// random bit patterns, grid ties, powers of two and their neighbours, extremes.
void fill_block(std::mt19937& rng, int kind, float* v) {
  std::normal_distribution<float> g(0.0f, 1.0f);
  const int e = static_cast<int>(rng() % 250) - 140;
  for (int i = 0; i < 32; ++i) {
    switch (kind % 6) {
      case 0:
        v[i] = std::ldexp(g(rng), e);
        break;
      case 1:
        v[i] = dmx::fp32_from_bits(rng() & 0xff7fffffu);
        break;
      case 2:
        v[i] = std::ldexp(std::round(g(rng) * 16) / 16, e % 24);
        break;  // many ties
      case 3: {
        const float p = std::ldexp(1.0f, e % 100);
        const float choices[] = {
            p, std::nextafter(p, 0.0f), std::nextafter(p, INFINITY), -p, 0.0f, -0.0f};
        v[i] = choices[rng() % 6];
        break;
      }
      case 4:
        v[i] = (rng() % 4 == 0) ? FLT_MAX * ((rng() & 1) ? 1 : -1) : g(rng);
        break;
      default: {  // subnormal; the two draws sequenced (argument order is unspecified in C++)
        const int shift = static_cast<int>(rng() % 19);
        v[i] = std::ldexp(g(rng), -130 - shift);
        break;
      }
    }
  }
}

std::string quantize_vectors() {
  std::string out =
      "# dMX golden quantize vectors. Format: golden/vectors/README.md\n"
      "# Q FORMAT RULE OVERFLOW NONFINITE INT8_MIN128 x0..x31(FP32 bits) -> SCALE c0..c31\n";
  std::mt19937 rng(20261128);
  const dmx::ScaleRule rules[] = {dmx::ScaleRule::FLOOR, dmx::ScaleRule::CEIL, dmx::ScaleRule::EVEN,
                                  dmx::ScaleRule::RCEIL};
  for (MxFormat fmt : dmx::kAllFormats)
    for (dmx::ScaleRule rule : rules)
      for (dmx::Overflow ov : {dmx::Overflow::SAT, dmx::Overflow::OVF})
        for (int k = 0; k < 18; ++k) {
          float v[32];
          fill_block(rng, k, v);
          dmx::QuantizeOptions opt;
          opt.scale_rule = rule;
          opt.overflow = ov;
          opt.int8_allow_minus128 = fmt == MxFormat::INT8 && k % 2;
          if (k == 17) {  // non-finite handling
            v[rng() % 32] = (rng() & 1) ? NAN : -INFINITY;
            opt.non_finite =
                (k % 2) ? dmx::NonFinitePolicy::ELEMENT : dmx::NonFinitePolicy::NAN_SCALE;
          }
          const dmx::MxBlock b = dmx::quantize_block(fmt, v, opt);
          std::string line = "Q ";
          line += dmx::format_name(fmt);
          line += std::string(" ") + dmx::scale_rule_name(rule) + " " + overflow_name(ov) + " " +
                  (opt.non_finite == dmx::NonFinitePolicy::ELEMENT ? "ELEMENT" : "NAN_SCALE") +
                  (opt.int8_allow_minus128 ? " 1" : " 0");
          for (float x : v) hex_word(line, x);
          line += " ->";
          hex_bytes(line, &b.scale, 1);
          hex_bytes(line, b.codes.data(), 32);
          out += line + "\n";
        }
  return out;
}

std::string dot_vectors() {
  std::string out =
      "# dMX golden dot vectors. Format: golden/vectors/README.md\n"
      "# D FA FB NBLOCKS ACC_IN A sa.. ca.. B sb.. cb.. -> r_0..r_{n-1} BLOCKED EXACT (FP32 "
      "bits)\n";
  std::mt19937 rng(1128);
  for (MxFormat fa : dmx::kAllFormats)
    for (MxFormat fb : dmx::kAllFormats)
      for (int k = 0; k < 12; ++k) {
        const int nb = 1 + k % 3;
        std::vector<uint8_t> sa(nb), sb(nb), ca(32 * nb), cb(32 * nb);
        for (int j = 0; j < nb; ++j) {
          // scales: ordinary, low end, high end, anything
          const int lo[] = {117, 0, 245, 0}, hi[] = {137, 10, 254, 254};
          const int r = k % 4;
          sa[j] = static_cast<uint8_t>(lo[r] + rng() % (hi[r] - lo[r] + 1));
          sb[j] = static_cast<uint8_t>(lo[r] + rng() % (hi[r] - lo[r] + 1));
          if (k == 11 && j == 0) sa[j] = 0xff;  // NaN scale
        }
        const uint32_t ma = (1u << dmx::format_bits(fa)) - 1, mb = (1u << dmx::format_bits(fb)) - 1;
        for (auto& c : ca) c = static_cast<uint8_t>(rng() & ma);
        for (auto& c : cb) c = static_cast<uint8_t>(rng() & mb);
        if (k % 5 == 4)  // sparse: one non-zero lane per block, the rest +0 or -0
          for (int i = 0; i < 32 * nb; ++i)
            if (i % 32 != static_cast<int>(k % 32))
              ca[i] = (rng() & 1) ? 0 : static_cast<uint8_t>(1u << (dmx::format_bits(fa) - 1));
        const float acc_in =
            (k % 3 == 2) ? std::ldexp(static_cast<float>(rng() % 1000) - 500.0f, -3) : -0.0f;
        std::string line = "D ";
        line += std::string(dmx::format_name(fa)) + " " + dmx::format_name(fb) + " " +
                std::to_string(nb);
        hex_word(line, acc_in);
        line += " A";
        hex_bytes(line, sa.data(), nb);
        hex_bytes(line, ca.data(), ca.size());
        line += " B";
        hex_bytes(line, sb.data(), nb);
        hex_bytes(line, cb.data(), cb.size());
        line += " ->";
        for (int j = 0; j < nb; ++j)
          hex_word(line, dmx::dot_block(fa, sa[j], &ca[32 * j], fb, sb[j], &cb[32 * j]));
        const dmx::MxVector a{fa, sa.data(), ca.data()}, b{fb, sb.data(), cb.data()};
        hex_word(line, dmx::dot_blocked(a, b, 32 * nb, acc_in));
        hex_word(line, dmx::dot_exact(a, b, 32 * nb));
        out += line + "\n";
      }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2 || std::string(argv[1]) == "--help") {
    std::fprintf(
        argc == 2 ? stdout : stderr,
        "usage: dmx-gen-vectors OUT_DIR\n"
        "Writes quantize.txt and dot.txt (the golden conformance vectors) into OUT_DIR.\n");
    return argc == 2 ? 0 : 2;
  }
  namespace fs = std::filesystem;
  const fs::path dir(argv[1]);
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    std::fprintf(stderr, "dmx-gen-vectors: error: %s: not a directory\n", argv[1]);
    return 2;
  }
  return dmx::run_tool("dmx-gen-vectors", [&] {
    dmx::write_file_atomic((dir / "quantize.txt").string(), quantize_vectors());
    dmx::write_file_atomic((dir / "dot.txt").string(), dot_vectors());
    return 0;
  });
}
