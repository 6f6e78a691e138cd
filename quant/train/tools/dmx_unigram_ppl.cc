// dmx-unigram-ppl: perplexity of a unigram model of a tokenizer (token frequencies of a training
// text, add-one smoothed over the vocabulary) on evaluation texts: the baseline the shipped
// models are compared with.
#include <dmx/cli.h>

#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "dmx/quant/tokenizer.h"

namespace {
std::string read_file(const std::string& path) {
  return dmx::read_regular_file(path, "text", int64_t(16) << 30);
}
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"dmx-unigram-ppl: unigram-model perplexity of a tokenizer on text files"};
  std::string tok_path, train_path;
  std::vector<std::string> evals;
  app.add_option("-t,--tokenizer", tok_path, "tokenizer.json or a model folder")->required();
  app.add_option("--train", train_path, "text the unigram counts come from")
      ->required()
      ->check(CLI::ExistingFile);
  app.add_option("--eval", evals, "text file(s) to evaluate")->required()->check(CLI::ExistingFile);
  if (const auto rc = dmx::parse_cli(app, "dmx-unigram-ppl", argc, argv)) return *rc;
  return dmx::run_tool("dmx-unigram-ppl", [&] {
    const auto tok = dmx::quant::Tokenizer::load(tok_path);
    const int64_t V = tok.vocab_size();
    std::vector<double> count(V, 1.0);  // add-one smoothing: every token has some mass
    double total = static_cast<double>(V);
    std::fprintf(stderr, "dmx-unigram-ppl: counting %s\n", train_path.c_str());
    for (int32_t id : tok.encode(read_file(train_path))) count[id] += 1, total += 1;
    nlohmann::ordered_json out;
    out["tokenizer"] = tok_path;
    out["train"] = train_path;
    for (const std::string& path : evals) {
      const std::vector<int32_t> ids = tok.encode(read_file(path));
      if (ids.empty()) throw std::runtime_error(path + ": no tokens");
      double nll = 0;
      for (int32_t id : ids) nll -= std::log(count[id] / total);
      nll /= static_cast<double>(ids.size());
      out["eval"].push_back({{"file", path},
                             {"tokens", ids.size()},
                             {"mean_nll", nll},
                             {"perplexity", std::exp(nll)}});
    }
    std::printf("%s\n", out.dump(2).c_str());
    return 0;
  });
}
