// The committed vector files: golden reproduces every line, and the generator reproduces the
// files byte for byte (so they cannot drift from the model).
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <unistd.h>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "dmx/golden.h"
#include "oracle.h"

namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

uint32_t hex(const std::string& t) { return static_cast<uint32_t>(std::stoul(t, nullptr, 16)); }

dmx::MxFormat fmt(const std::string& s) {
  auto f = dmx::parse_format(s);
  if (!f) throw std::runtime_error("bad format " + s);
  return *f;
}

TEST(Vectors, QuantizeFileReplays) {
  std::ifstream in(std::string(DMX_VECTORS_DIR) + "/quantize.txt");
  ASSERT_TRUE(in) << "golden/vectors/quantize.txt missing";
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream ss(line);
    std::string tag, f, rule, ov, nf, m128, arrow;
    ss >> tag >> f >> rule >> ov >> nf >> m128;
    ASSERT_EQ(tag, "Q");
    float v[32];
    for (float& x : v) {
      std::string t;
      ss >> t;
      x = oracle::from_bits(hex(t));
    }
    ss >> arrow;
    ASSERT_EQ(arrow, "->");
    dmx::QuantizeOptions opt;
    opt.scale_rule = *dmx::parse_scale_rule(rule);
    opt.overflow = ov == "OVF" ? dmx::Overflow::OVF : dmx::Overflow::SAT;
    opt.non_finite = nf == "ELEMENT" ? dmx::NonFinitePolicy::ELEMENT : dmx::NonFinitePolicy::NAN_SCALE;
    opt.int8_allow_minus128 = m128 == "1";
    const dmx::MxBlock b = dmx::quantize_block(fmt(f), v, opt);
    std::string t;
    ss >> t;
    ASSERT_EQ(b.scale, hex(t)) << line;
    for (int i = 0; i < 32; ++i) {
      ss >> t;
      ASSERT_EQ(b.codes[i], hex(t)) << line;
    }
    ++n;
  }
  EXPECT_GT(n, 800);
}

TEST(Vectors, DotFileReplays) {
  std::ifstream in(std::string(DMX_VECTORS_DIR) + "/dot.txt");
  ASSERT_TRUE(in) << "golden/vectors/dot.txt missing";
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream ss(line);
    std::string tag, fa, fb, t;
    int nb;
    ss >> tag >> fa >> fb >> nb >> t;
    ASSERT_EQ(tag, "D");
    const float acc = oracle::from_bits(hex(t));
    auto read = [&](std::vector<uint8_t>& s, std::vector<uint8_t>& c) {
      ss >> t;  // A or B
      s.resize(nb);
      c.resize(32 * nb);
      for (auto& x : s) ss >> t, x = static_cast<uint8_t>(hex(t));
      for (auto& x : c) ss >> t, x = static_cast<uint8_t>(hex(t));
    };
    std::vector<uint8_t> sa, ca, sb, cb;
    read(sa, ca);
    read(sb, cb);
    ss >> t;
    ASSERT_EQ(t, "->");
    for (int j = 0; j < nb; ++j) {
      ss >> t;
      ASSERT_TRUE(oracle::same(dmx::dot_block(fmt(fa), sa[j], &ca[32 * j], fmt(fb), sb[j], &cb[32 * j]),
                               oracle::from_bits(hex(t))))
          << line;
    }
    const dmx::MxVector a{fmt(fa), sa.data(), ca.data()}, b{fmt(fb), sb.data(), cb.data()};
    ss >> t;
    ASSERT_TRUE(oracle::same(dmx::dot_blocked(a, b, 32 * nb, acc), oracle::from_bits(hex(t)))) << line;
    ss >> t;
    ASSERT_TRUE(oracle::same(dmx::dot_exact(a, b, 32 * nb), oracle::from_bits(hex(t)))) << line;
    ++n;
  }
  EXPECT_EQ(n, 36 * 12);
}

TEST(Vectors, GeneratorReproducesCommittedFiles) {
  namespace fs = std::filesystem;
  const fs::path tmp = fs::temp_directory_path() / ("dmx_vectors_" + std::to_string(::getpid()));
  fs::create_directories(tmp);
  const std::string cmd = std::string(DMX_GEN_VECTORS) + " " + tmp.string();
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  for (const char* name : {"quantize.txt", "dot.txt"})
    EXPECT_EQ(slurp((tmp / name).string()), slurp(std::string(DMX_VECTORS_DIR) + "/" + name))
        << name << " differs from the generator's output: regenerate with dmx-gen-vectors golden/vectors";
  fs::remove_all(tmp);
}

}  // namespace
