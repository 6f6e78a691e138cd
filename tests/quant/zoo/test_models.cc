// The shipped models: each loads with the runtime, has the architecture traits its README
// claims, fits the size limits, and dmx-eval reproduces the perplexities its README states
// (recorded by dmx-train in train_summary.json and written into the README).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "dmx/quant/config.h"
#include "dmx/quant/model.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const std::string kRoot = DMX_SOURCE_DIR;
const std::string kEval = DMX_EVAL_BIN;

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in) << "cannot read " << path;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class ZooModel : public ::testing::TestWithParam<std::string> {
 protected:
  std::string dir() const { return kRoot + "/models/" + GetParam(); }
  json summary() const { return json::parse(read_file(dir() + "/train_summary.json")); }

  // dmx-eval's perplexity of the model on a shipped split, checked against the README.
  void reproduce(const std::string& split) {
    const json s = summary();
    ASSERT_TRUE(s.contains(split)) << dir() << "/train_summary.json has no " << split;
    const double want = s[split]["perplexity"].get<double>();
    const int64_t seqlen = s[split]["seqlen"].get<int64_t>();
    const std::string out = ::testing::TempDir() + "/zoo_eval_" + GetParam() + "_" + split + "_" +
                            std::to_string(::getpid()) + ".json";
    const std::string cmd = "'" + kEval + "' --model '" + dir() + "' --data '" + kRoot +
                            "/data/wiki." + split + ".raw' --seqlen " + std::to_string(seqlen) +
                            " --batch 8 --threads 1 --quiet --out '" + out + "' > /dev/null";
    const int st = std::system(cmd.c_str());
    ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << cmd;
    const json r = json::parse(read_file(out));
    std::remove(out.c_str());
    EXPECT_EQ(r["windows"].get<int64_t>(), s[split]["windows"].get<int64_t>());
    EXPECT_NEAR(r["perplexity"].get<double>(), want, want * 1e-4) << GetParam() << " " << split;
    // The README states the same number (two decimals).
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.2f", want);
    EXPECT_NE(read_file(dir() + "/README.md").find(buf), std::string::npos)
        << dir() << "/README.md does not state the " << split << " perplexity " << buf;
  }
};

TEST_P(ZooModel, LoadsWithTheRuntimeWithinLimits) {
  const dmx::quant::ModelConfig cfg = dmx::quant::load_config(dir());
  const int64_t params = dmx::quant::parameter_count(cfg);
  EXPECT_GE(params, 2'000'000);
  EXPECT_LE(params, 8'000'000);
  EXPECT_LE(fs::file_size(dir() + "/model.safetensors"), 12u * 1024 * 1024);
  EXPECT_TRUE(fs::exists(dir() + "/tokenizer.json"));
  EXPECT_EQ(summary()["parameters"].get<int64_t>(), params);
  // Training budget: the compute of 3000 steps of 12 x 128 tokens on at most 8M parameters
  // (llama-tiny alone measured 0.63 s/step, about 32 min for 3000 steps on one core). Recorded
  // wall time is not the measure: it depends on what shared the machine and on the VM's speed
  // that day (llama-tiny and qwen3-tiny side by side took ~58.6 min each; smollm2-tiny, retrained
  // beside two sweeps, 91.8 min, and 40 steps of it alone ran at 2.16 s/step the same day). The
  // wall bound only catches a run far outside the schedule: 2 hours of one core per thread.
  EXPECT_LE(summary()["tokens_seen"].get<double>(), 3000.0 * 12 * 128);
  EXPECT_LE(summary()["train_seconds"].get<double>() * summary()["threads"].get<double>(),
            2 * 60 * 60.0);

  const std::string name = GetParam();
  if (name == "llama-tiny") {
    EXPECT_EQ(cfg.arch, dmx::quant::Architecture::Llama);
    EXPECT_FALSE(cfg.tie_word_embeddings);
    EXPECT_EQ(cfg.rope_scaling.type, "llama3");
  } else if (name == "smollm2-tiny") {
    EXPECT_EQ(cfg.arch, dmx::quant::Architecture::Llama);
    EXPECT_TRUE(cfg.tie_word_embeddings);
  } else {
    EXPECT_EQ(cfg.arch, dmx::quant::Architecture::Qwen3);
    EXPECT_NE(cfg.head_dim * cfg.num_attention_heads, cfg.hidden_size);  // explicit head_dim
  }
  EXPECT_LT(cfg.num_key_value_heads, cfg.num_attention_heads);  // GQA in all three

  const auto model = dmx::quant::CausalLM::load(dir());
  const auto names = model.named_parameters();
  EXPECT_EQ(std::count_if(names.begin(), names.end(),
                          [](const auto& p) { return p.first == "lm_head.weight"; }),
            cfg.tie_word_embeddings ? 0 : 1);
}

TEST_P(ZooModel, FarBelowUnigramPerplexity) {
  const json uni = json::parse(read_file(kRoot + "/models/unigram.json"));
  double unigram_test = 0;
  for (const json& e : uni["eval"])
    if (e["file"].get<std::string>().find("wiki.test.raw") != std::string::npos)
      unigram_test = e["perplexity"].get<double>();
  ASSERT_GT(unigram_test, 0);
  EXPECT_LT(summary()["test"]["perplexity"].get<double>(), unigram_test / 4)
      << GetParam() << " vs unigram " << unigram_test;
}

TEST_P(ZooModel, DmxEvalReproducesTestPerplexity) { reproduce("test"); }
TEST_P(ZooModel, DmxEvalReproducesValidPerplexity) { reproduce("valid"); }

INSTANTIATE_TEST_SUITE_P(Shipped, ZooModel,
                         ::testing::Values("llama-tiny", "smollm2-tiny", "qwen3-tiny"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& c : n)
                             if (c == '-') c = '_';
                           return n;
                         });

}  // namespace
