// dmx-search --rotate hadamard end to end: the assignment records the rotation, metrics.json the
// baselines, dmx-eval applies the rotation on the fake-quant backend (the same perplexity as
// rotating and fake-quantizing in process, and not the unrotated one), and the paths that cannot
// run a rotated model refuse it by name.
#include <ATen/ATen.h>
#include <dmx/quant/deploy.h>
#include <dmx/quant/eval.h>
#include <dmx/quant/model.h>
#include <dmx/quant/tokenizer.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace dmx::quant;

#if defined(DMX_SEARCH_BIN) && defined(DMX_EVAL_BIN) && defined(DMX_EXPORT_BIN)
std::string slurp(const fs::path& p) {
  std::ifstream f(p);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

int run(const std::string& cmd) {
  const int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

TEST(RotateCli, SearchRecordsTheRotationAndEvalAppliesIt) {
  const std::string repo = DMX_REPO, model = repo + "/models/llama-tiny";
  const std::string data = repo + "/data/wiki.test.raw";
  const fs::path d =
      fs::temp_directory_path() / ("dmx_test_rotate_cli_" + std::to_string(getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  const std::string common = " --model " + model + " --data " + data +
                             " --method uniform --format e2m1 --seqlen 64 --calib-windows 2 "
                             "--eval-windows 4 --threads 1 ";
  ASSERT_EQ(run(std::string(DMX_SEARCH_BIN) + common + "--rotate hadamard --rotate-seed 3 --out " +
                (d / "rot").string() + " 2>" + (d / "rot.log").string()),
            0)
      << slurp(d / "rot.log");
  const json a = json::parse(slurp(d / "rot" / "assignment.json"));
  EXPECT_EQ(a.at("rotation"), (json{{"kind", "hadamard"}, {"seed", 3}}));
  const std::string assignment = (d / "rot" / "assignment.json").string();
  // metrics.json carries the baselines on the same windows: its own uniform E2M1 point (run
  // through the assignment path) equals the E2M1 baseline (the fixed-format path) exactly.
  const json met = json::parse(slurp(d / "rot" / "metrics.json"));
  const json& base = met.at("baselines");
  EXPECT_EQ(base.at("uniform_E2M1"), met.at("perplexity"));
  for (const char* k :
       {"fp32", "uniform_E3M2", "uniform_E2M3", "uniform_E4M3", "uniform_E5M2", "uniform_INT8"})
    EXPECT_TRUE(base.contains(k)) << k;
  EXPECT_LT(base.at("fp32").get<double>(), base.at("uniform_E2M1").get<double>());
  EXPECT_LT(base.at("uniform_E4M3").get<double>(), base.at("uniform_E2M1").get<double>());

  // dmx-eval on the fake-quant backend against the same computation in process.
  const std::string js = (d / "eval.json").string();
  ASSERT_EQ(run(std::string(DMX_EVAL_BIN) + " --model " + model + " --assignment " + assignment +
                " --data " + data + " --seqlen 64 --max-windows 4 --threads 1 --quiet --out " + js +
                " >/dev/null"),
            0);
  const double eval_nll = json::parse(slurp(js)).at("mean_nll").get<double>();
  CausalLM m = CausalLM::load(model);
  m.rotate_hadamard(3);
  apply_fake_quant(m, uniform_assignment(m.config(), dmx::MxFormat::E2M1, dmx::MxFormat::E2M1));
  PerplexityOptions po;
  po.seqlen = 64;
  po.max_windows = 4;
  const Tokenizer tok = Tokenizer::load(model);
  const double want = perplexity_of_file(m, tok, data, po).mean_nll;
  EXPECT_NEAR(eval_nll, want, 1e-6);
  // The FP32 baseline of the rotated model is the unrotated model's perplexity (same function).
  {
    PerplexityOptions fo = po;
    fo.max_windows = 4;
    const double fp32 = perplexity_of_file(CausalLM::load(model), tok, data, fo).perplexity;
    EXPECT_NEAR(base.at("fp32").get<double>(), fp32, 1e-4 * fp32);
  }
  CausalLM plain = CausalLM::load(model);
  apply_fake_quant(plain,
                   uniform_assignment(plain.config(), dmx::MxFormat::E2M1, dmx::MxFormat::E2M1));
  const double unrotated = perplexity_of_file(plain, tok, data, po).mean_nll;
  EXPECT_GT(std::abs(want - unrotated), 1e-4) << "the rotation changed nothing";

  // The kernel backend and the packed export have no form for the online transform: refused.
  const std::string err = (d / "err.txt").string();
  EXPECT_EQ(run(std::string(DMX_EVAL_BIN) + " --model " + model + " --assignment " + assignment +
                " --backend kernels --data " + data + " --max-windows 1 --quiet 2>" + err),
            1);
  EXPECT_NE(slurp(err).find("Hadamard-rotated"), std::string::npos) << slurp(err);
  EXPECT_EQ(run(std::string(DMX_EXPORT_BIN) + " --model " + model + " --assignment " + assignment +
                " --out " + (d / "packed").string() + " 2>" + err),
            2);
  EXPECT_NE(slurp(err).find("Hadamard-rotated"), std::string::npos) << slurp(err);
  EXPECT_FALSE(fs::exists(d / "packed" / "model.safetensors"));
  // A size with no construction is a usage error before anything is loaded.
  const fs::path odd = d / "odd";
  fs::create_directories(odd);
  json cfg = json::parse(slurp(model + "/config.json"));
  cfg["intermediate_size"] = 100;
  std::ofstream(odd / "config.json") << cfg.dump();
  EXPECT_EQ(run(std::string(DMX_SEARCH_BIN) + " --model " + odd.string() + " --data " + data +
                " --method uniform --format e2m1 --rotate hadamard --out " + (d / "o").string() +
                " 2>" + err),
            2);
  EXPECT_NE(slurp(err).find("size 100 has no Hadamard construction"), std::string::npos)
      << slurp(err);
  fs::remove_all(d);
}
#endif

}  // namespace
