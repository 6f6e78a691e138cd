// dmx-random-model: a Hugging Face checkpoint with random weights for a given config.json (for
// benchmarks at published model shapes without downloading weights; never shipped).
//   dmx-random-model --config config.json --out DIR [--seed 0] [--std 0.02] [--tokenizer FILE]
#include <dmx/cli.h>

#include <filesystem>
#include <iostream>

#include "dmx/quant/config.h"
#include "dmx/quant/model.h"

int main(int argc, char** argv) {
  CLI::App app{"dmx-random-model: random-weight checkpoint (BF16) of a config.json"};
  std::string config, out, tokenizer;
  uint64_t seed = 0;
  double std_dev = 0.02;
  app.add_option("--config", config, "config.json (LlamaForCausalLM / Qwen3ForCausalLM)")
      ->required();
  app.add_option("--out", out, "output directory")->required();
  app.add_option("--seed", seed, "weights ~ N(0, std^2), norms ~ 1 + N(0, std^2)");
  app.add_option("--std", std_dev, "standard deviation")->check(CLI::PositiveNumber);
  app.add_option("--tokenizer", tokenizer, "tokenizer.json to copy into --out");
  if (const auto rc = dmx::parse_cli(app, "dmx-random-model", argc, argv)) return *rc;
  return dmx::run_tool("dmx-random-model", [&] {
    namespace fs = std::filesystem;
    if (fs::exists(out) && !(fs::is_directory(out) && fs::is_empty(out)))
      throw std::runtime_error(out + ": exists and is not empty");
    if (!tokenizer.empty() && !fs::is_regular_file(tokenizer))
      throw std::runtime_error(tokenizer + ": tokenizer file does not exist");
    const dmx::quant::ModelConfig cfg = dmx::quant::load_config(config);
    dmx::StagedDirectory staged(out);
    dmx::quant::CausalLM::random(cfg, seed, std_dev).save(staged.dir(), at::kBFloat16);
    if (!tokenizer.empty()) fs::copy_file(tokenizer, fs::path(staged.dir()) / "tokenizer.json");
    staged.commit();
    std::cout << "dmx-random-model: " << out << ": " << dmx::quant::parameter_count(cfg)
              << " parameters (BF16)\n";
    return 0;
  });
}
