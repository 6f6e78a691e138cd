// dmx-generate: text from a prompt (greedy or sampled, KV cache), with a tokens-per-second line.
//   dmx-generate --model PACKED_DIR --prompt "text" [--max-new-tokens 64] [--temperature 0]
//   dmx-generate --model HF_DIR --assignment assignment.json --prompt ...   (quantized at load)
//   dmx-generate --model HF_DIR --backend torch --prompt ...               (LibTorch FP32)
#include <dmx/cli.h>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "dmx/json.h"
#include "dmx/quant/config.h"
#include "dmx/quant/deploy.h"
#include "dmx/quant/safetensors.h"
#include "dmx/quant/threads.h"
#include "dmx/quant/tokenizer.h"

int main(int argc, char** argv) {
  CLI::App app{
      "dmx-generate: generate text with a causal LM; decoder Linears on dmx::kernels "
      "(packed checkpoint or --assignment) or in LibTorch"};
  std::string model_dir, assignment, prompt, prompt_file, tokenizer_path, out;
  std::string backend_name = "kernels";
  dmx::quant::GenerateOptions g;
  int threads = 0;
  int64_t max_prompt_tokens = 0;
  bool print_ids = false, ignore_eos = false, quiet = false;
  app.add_option("--model", model_dir, "packed checkpoint (dmx-export) or Hugging Face directory")
      ->required();
  app.add_option("--assignment", assignment, "with a Hugging Face directory: formats per layer");
  auto* p1 = app.add_option("--prompt", prompt, "prompt text");
  auto* p2 = app.add_option("--prompt-file", prompt_file, "read the prompt from this file");
  p1->excludes(p2);
  app.add_option("--max-prompt-tokens", max_prompt_tokens,
                 "use only the first N prompt tokens (benchmarks: a prefill of exactly N; the "
                 "prompt must have at least N)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--tokenizer", tokenizer_path, "tokenizer.json (default: MODEL/tokenizer.json)");
  app.add_option("--backend", backend_name,
                 "kernels: quantized Linears on dmx::kernels; torch: LibTorch (fake quantization "
                 "with an assignment or a packed checkpoint, FP32 otherwise)")
      ->check(CLI::IsMember({"kernels", "torch", "fake-quant"}));
  app.add_option("--max-new-tokens", g.max_new_tokens, "tokens to generate")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  app.add_option("--temperature", g.temperature, "0: greedy; > 0: sampling")
      ->check(CLI::Range(0.0, 100.0));
  app.add_option("--top-k", g.top_k, "sampling: keep the k most likely tokens (0: all)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--top-p", g.top_p, "sampling: nucleus probability")->check(CLI::Range(0.0, 1.0));
  app.add_option("--seed", g.seed, "sampling seed");
  app.add_option("--threads", threads, "threads for LibTorch and the kernels (0: default)")
      ->check(CLI::NonNegativeNumber);
  app.add_flag("--ids", print_ids, "print the generated token ids (one line) instead of text");
  app.add_flag("--ignore-eos", ignore_eos, "do not stop at the config's eos_token_id");
  app.add_option("--out", out, "write tokens, text and timings as JSON here");
  app.add_flag("--quiet", quiet, "no tokens-per-second line on stderr");
  if (const auto rc = dmx::parse_cli(app, "dmx-generate", argc, argv)) return *rc;
  return dmx::run_tool("dmx-generate", [&] {
    if (prompt.empty() && prompt_file.empty())
      throw dmx::UsageError("--prompt: a prompt (--prompt or --prompt-file) is required");
    using namespace dmx::quant;
    if (!prompt_file.empty()) prompt = dmx::read_regular_file(prompt_file, "prompt file");
    if (!std::filesystem::is_directory(model_dir))
      throw std::runtime_error(model_dir + ": model directory does not exist");
    const Tokenizer tok =
        Tokenizer::load(tokenizer_path.empty() ? model_dir + "/tokenizer.json" : tokenizer_path);
    std::vector<int32_t> ids = tok.encode(prompt);
    if (ids.empty()) throw std::runtime_error("--prompt: tokenizes to no tokens");
    if (max_prompt_tokens > 0) {
      if (static_cast<int64_t>(ids.size()) < max_prompt_tokens)
        throw std::runtime_error((prompt_file.empty() ? std::string("--prompt") : prompt_file) +
                                 ": has " + std::to_string(ids.size()) +
                                 " tokens, fewer than --max-prompt-tokens " +
                                 std::to_string(max_prompt_tokens));
      ids.resize(static_cast<size_t>(max_prompt_tokens));
    }
    // The suite's one thread policy (dmx/quant/threads.h) for LibTorch and OpenBLAS, sized by the
    // prefill. --threads N gives the MX kernels' pool N as well; by default that pool keeps its
    // own default (all cores: its row-split GEMVs are memory-bound and gain from every core).
    const ThreadChoice thread_choice = configure_threads(
        threads, thread_work_size(int64_t(ids.size()), load_config(model_dir).hidden_size));
    dmx::kernels::KernelConfig kcfg;
    if (threads > 0) kcfg.threads = thread_choice.threads;
    const Backend backend = *parse_backend(backend_name);
    const CausalLM model = load_for_backend(model_dir, assignment, backend, at::kFloat, kcfg);
    for (int32_t t : ids)
      if (t >= model.config().vocab_size)
        throw std::runtime_error("--prompt: token id " + std::to_string(t) +
                                 " is outside the model's vocabulary (tokenizer and model differ)");
    if (!ignore_eos) g.stop_ids = model.config().eos_token_ids;
    const bool stream = !print_ids;
    std::string shown;
    std::vector<int32_t> so_far;
    GenerateResult r = generate(model, ids, g, [&](int32_t t) {
      if (!stream) return;
      so_far.push_back(t);
      const std::string text = tok.decode(so_far);
      // Print only whole UTF-8 characters: hold back a trailing partial sequence.
      size_t end = text.size();
      for (size_t back = 1; back <= 3 && back <= text.size(); ++back) {
        const unsigned char c = static_cast<unsigned char>(text[text.size() - back]);
        if ((c & 0xC0) == 0x80) continue;
        const size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
        if (need > back) end = text.size() - back;
        break;
      }
      if (end > shown.size()) {
        std::fwrite(text.data() + shown.size(), 1, end - shown.size(), stdout);
        std::fflush(stdout);
        shown = text.substr(0, end);
      }
    });
    if (print_ids) {
      for (size_t i = 0; i < r.tokens.size(); ++i) std::printf("%s%d", i ? " " : "", r.tokens[i]);
    } else {
      const std::string text = tok.decode(r.tokens);
      if (text.size() > shown.size())
        std::fwrite(text.data() + shown.size(), 1, text.size() - shown.size(), stdout);
    }
    std::printf("\n");
    const double rss_mib = static_cast<double>(peak_rss_bytes()) / (1 << 20);
    if (!quiet)
      std::fprintf(stderr,
                   "dmx-generate: backend %s, %s: prefill %lld tokens in %.3f s (%.1f tokens/s), "
                   "decode %zu tokens in %.3f s (%.2f tokens/s), peak RSS %.0f MiB\n",
                   backend_name.c_str(), thread_choice.describe().c_str(),
                   static_cast<long long>(r.prompt_tokens), r.prefill_seconds,
                   r.prefill_tokens_per_s(), r.tokens.size() > 0 ? r.tokens.size() - 1 : 0,
                   r.decode_seconds, r.decode_tokens_per_s(), rss_mib);
    if (!out.empty()) {
      nlohmann::json j = {{"model", model_dir},
                          {"assignment", assignment},
                          {"backend", backend_name},
                          {"prompt_tokens", r.prompt_tokens},
                          {"tokens", r.tokens},
                          {"text", tok.decode(r.tokens)},
                          {"temperature", g.temperature},
                          {"top_k", g.top_k},
                          {"top_p", g.top_p},
                          {"seed", g.seed},
                          {"prefill_seconds", r.prefill_seconds},
                          {"decode_seconds", r.decode_seconds},
                          {"prefill_tokens_per_s", r.prefill_tokens_per_s()},
                          {"decode_tokens_per_s", r.decode_tokens_per_s()},
                          {"threads", thread_choice.threads},
                          {"peak_rss_bytes", peak_rss_bytes()}};
      dmx::write_json_atomic(out, j);
    }
    return 0;
  });
}
