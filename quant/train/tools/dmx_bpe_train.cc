// dmx-bpe-train: trains a byte-level BPE tokenizer and writes a Hugging Face tokenizer.json.
#include <dmx/cli.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "dmx/progress.h"
#include "dmx/quant/safetensors.h"  // write_file_atomic
#include "dmx/train/bpe.h"

int main(int argc, char** argv) {
  CLI::App app{"dmx-bpe-train: train a GPT-2 style byte-level BPE tokenizer (tokenizer.json)"};
  std::vector<std::string> inputs;
  std::string output;
  dmx::train::BpeOptions opt;
  bool quiet = false;
  app.add_option("-i,--input", inputs, "UTF-8 training text file(s)")
      ->required()
      ->check(CLI::ExistingFile);
  app.add_option("-o,--output", output, "tokenizer.json to write")->required();
  app.add_option("--vocab-size", opt.vocab_size, "total vocabulary incl. special and byte tokens")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{257}, int64_t{1} << 20));
  app.add_option("--min-frequency", opt.min_frequency, "never merge a pair seen fewer times")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--special-token", opt.special_tokens, "special tokens (ids 0, 1, ...)")
      ->capture_default_str();
  app.add_flag("-q,--quiet", quiet, "no progress output");
  if (const auto rc = dmx::parse_cli(app, "dmx-bpe-train", argc, argv)) return *rc;
  return dmx::run_tool("dmx-bpe-train", [&] {
    const auto t0 = std::chrono::steady_clock::now();
    dmx::train::WordCounter counter;
    int64_t bytes = 0;
    for (const std::string& path : inputs) {
      const std::string text = dmx::read_regular_file(path, "training text", int64_t(16) << 30);
      bytes += static_cast<int64_t>(text.size());
      counter.add(text, path);
    }
    if (!quiet)
      std::fprintf(stderr, "dmx-bpe-train: %lld bytes, %zu distinct pre-tokens\n",
                   static_cast<long long>(bytes), counter.counts().size());
    dmx::ProgressLine progress("dmx-bpe-train", "merges", quiet);
    opt.progress = [&](int64_t done, int64_t wanted) { progress.update(done, wanted); };
    const dmx::train::BpeModel model = dmx::train::train_bpe(counter.counts(), opt);
    if (static_cast<int64_t>(model.vocab.size()) < opt.vocab_size)
      std::fprintf(
          stderr, "dmx-bpe-train: warning: only %zu tokens (no pair left with frequency >= %lld)\n",
          model.vocab.size(), static_cast<long long>(opt.min_frequency));
    dmx::quant::write_file_atomic(output, dmx::train::tokenizer_json(model));
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!quiet)
      std::fprintf(stderr, "dmx-bpe-train: wrote %s (%zu tokens, %zu merges) in %.1f s\n",
                   output.c_str(), model.vocab.size(), model.merges.size(), s);
    return 0;
  });
}
