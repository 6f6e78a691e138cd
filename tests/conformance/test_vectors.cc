// The committed vector files: golden reproduces every line, and the generator reproduces the
// files byte for byte (so they cannot drift from the model).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "dmx/golden.h"
#include "dmx/vectors.h"
#include "oracle.h"

namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Replayed through golden's public reader (dmx/vectors.h), which validates every token.
TEST(Vectors, QuantizeFileReplays) {
  const dmx::VectorFile f = dmx::load_vector_file(std::string(DMX_VECTORS_DIR) + "/quantize.txt");
  ASSERT_TRUE(f.dot.empty());
  for (const dmx::QuantizeVector& q : f.quantize) {
    float v[32];
    for (int i = 0; i < 32; ++i) v[i] = oracle::from_bits(q.input_bits[i]);
    const dmx::MxBlock b = dmx::quantize_block(q.format, v, q.options);
    ASSERT_EQ(b.scale, q.scale) << dmx::format_name(q.format);
    for (int i = 0; i < 32; ++i) ASSERT_EQ(b.codes[i], q.codes[i]) << dmx::format_name(q.format);
  }
  EXPECT_GT(f.quantize.size(), 800u);
}

TEST(Vectors, DotFileReplays) {
  const dmx::VectorFile f = dmx::load_vector_file(std::string(DMX_VECTORS_DIR) + "/dot.txt");
  ASSERT_TRUE(f.quantize.empty());
  for (const dmx::DotVector& d : f.dot) {
    const float acc = oracle::from_bits(d.acc_in_bits);
    for (int j = 0; j < d.blocks; ++j)
      ASSERT_TRUE(oracle::same(dmx::dot_block(d.format_a, d.scales_a[j], &d.codes_a[32 * j],
                                              d.format_b, d.scales_b[j], &d.codes_b[32 * j]),
                               oracle::from_bits(d.block_results_bits[j])));
    const dmx::MxVector a{d.format_a, d.scales_a.data(), d.codes_a.data()};
    const dmx::MxVector b{d.format_b, d.scales_b.data(), d.codes_b.data()};
    ASSERT_TRUE(oracle::same(dmx::dot_blocked(a, b, 32 * d.blocks, acc),
                             oracle::from_bits(d.blocked_bits)));
    ASSERT_TRUE(oracle::same(dmx::dot_exact(a, b, 32 * d.blocks), oracle::from_bits(d.exact_bits)));
  }
  EXPECT_EQ(f.dot.size(), 36u * 12);
}

// Malformed lines: one error naming the file and line, never a guess.
TEST(Vectors, ReaderRefusesMalformedLines) {
  auto err = [](const std::string& text) {
    try {
      dmx::parse_vector_file(text, "v.txt");
    } catch (const dmx::VectorFileError& e) {
      return std::string(e.what());
    }
    return std::string("(accepted)");
  };
  std::string q = "Q E4M3 FLOOR SAT NAN_SCALE 0";
  for (int i = 0; i < 32; ++i) q += " 3f800000";
  q += " -> 7f";
  for (int i = 0; i < 32; ++i) q += " 38";
  EXPECT_EQ(err(q + "\n"), "(accepted)");
  EXPECT_NE(err("# c\n" + q + " 00\n").find("v.txt:2: trailing tokens"), std::string::npos);
  EXPECT_NE(err(q.substr(0, q.size() - 3)).find("line ends before"), std::string::npos);
  EXPECT_NE(err("X 1 2\n").find("v.txt:1: tag 'X'"), std::string::npos);
  EXPECT_NE(err("Q E9M9 FLOOR\n").find("not a format name"), std::string::npos);
  EXPECT_NE(err("D E4M3 E4M3 99999999 0\n").find("NBLOCKS"), std::string::npos);
  EXPECT_NE(err("D E4M3 E4M3 2 80000000 A\n").find("needs 144 tokens"), std::string::npos);
  std::string bad_code = q;
  bad_code.replace(bad_code.size() - 2, 2, "zz");
  EXPECT_NE(err(bad_code).find("'zz' is not 2 lower-case hex digits"), std::string::npos);
  std::string fp4 = q;
  fp4.replace(2, 4, "E2M1");
  EXPECT_NE(err(fp4).find("does not fit E2M1"), std::string::npos);
  EXPECT_NE(err(std::string("Q\0 E4M3", 8)).find("NUL"), std::string::npos);
}

TEST(Vectors, GeneratorReproducesCommittedFiles) {
  namespace fs = std::filesystem;
  const fs::path tmp = fs::temp_directory_path() / ("dmx_vectors_" + std::to_string(::getpid()));
  fs::create_directories(tmp);
  const std::string cmd = std::string(DMX_GEN_VECTORS) + " " + tmp.string();
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  for (const char* name : {"quantize.txt", "dot.txt"})
    EXPECT_EQ(slurp((tmp / name).string()), slurp(std::string(DMX_VECTORS_DIR) + "/" + name))
        << name
        << " differs from the generator's output: regenerate with dmx-gen-vectors golden/vectors";
  fs::remove_all(tmp);
}

}  // namespace
