// dmx-eval: perplexity of a Hugging Face checkpoint on a raw text file (WikiText-2 raw layout).
//   dmx-eval --model DIR --data wiki.test.raw [--seqlen 2048] [--max-windows N] [--out r.json]
//            [--assignment assignment.json] [--backend fake-quant|kernels]
// DIR may also be a packed-MX checkpoint written by dmx-export (its own formats).
// Sharded over processes (dmx/dist.h): MASTER_ADDR/MASTER_PORT/RANK/WORLD_SIZE or the same flags;
// each rank evaluates a block of whole batches and rank 0 prints and writes the exact total.
#include <ATen/Parallel.h>
#include <dmx/cli.h>
#include <dmx/dist.h>
#include <dmx/json.h>
#include <dmx/progress.h>
#include <dmx/quant/memory.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "dmx/quant/deploy.h"
#include "dmx/quant/eval.h"
#include "dmx/quant/model.h"
#include "dmx/quant/safetensors.h"
#include "dmx/quant/threads.h"
#include "dmx/quant/tokenizer.h"

int main(int argc, char** argv) {
  CLI::App app{
      "dmx-eval: perplexity of a Hugging Face causal LM (Llama / SmolLM2 / Qwen3) on a raw text "
      "file"};
  std::string model_dir, data, out, tokenizer_path, dtype_name = "float32", assignment;
  std::string backend_name = "fake-quant";
  int64_t seqlen = 2048, max_windows = 0, batch = 1;
  int threads = 0;
  bool quiet = false;
  app.add_option("--model", model_dir,
                 "model directory (config.json, model.safetensors[.index.json], tokenizer.json)")
      ->required();
  app.add_option("--data", data,
                 "raw UTF-8 text file, tokenized whole (e.g. wikitext-2-raw wiki.test.raw)")
      ->required();
  app.add_option("--seqlen", seqlen, "window length in tokens")
      ->check(CLI::Range(int64_t{2}, int64_t{1} << 20));
  app.add_option("--max-windows", max_windows, "evaluate at most N windows (0: all)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--batch", batch, "windows per forward pass")->check(CLI::PositiveNumber);
  app.add_option("--tokenizer", tokenizer_path, "tokenizer.json (default: MODEL/tokenizer.json)");
  app.add_option("--dtype", dtype_name, "compute dtype: float32 or bfloat16")
      ->check(CLI::IsMember({"float32", "bfloat16"}));
  app.add_option("--threads", threads,
                 "compute threads, exactly (0: chosen from the window size, see quant/README.md)")
      ->check(CLI::Range(0, dmx::quant::kMaxThreads));
  app.add_option("--out", out, "write the result as JSON here (default: print only)");
  app.add_option("--assignment", assignment,
                 "assignment.json of dmx-search: decoder Linears quantized per layer");
  app.add_option("--backend", backend_name,
                 "fake-quant: LibTorch fake quantization (dmx-search's path); kernels: quantized "
                 "Linears on dmx::kernels (needs --assignment or a packed checkpoint)")
      ->check(CLI::IsMember({"fake-quant", "kernels"}));
  app.add_flag("--quiet", quiet, "no progress on stderr");
  dmx::dist::LaunchFlags dist_flags;
  dmx::dist::add_dist_options(app, dist_flags);
  if (const auto rc = dmx::parse_cli(app, "dmx-eval", argc, argv)) return *rc;

  return dmx::run_tool("dmx-eval", [&] {
    const dmx::dist::Launch launch = dmx::dist::resolve_launch(dist_flags);
    if (!std::filesystem::is_directory(model_dir))
      throw std::runtime_error(model_dir + ": model directory does not exist");
    // Everything that can be refused is refused before the model is loaded: the config (a
    // directory without one is named as such), a window that cannot fit in memory (with the
    // estimate), an --out whose directory does not exist.
    dmx::quant::ThreadChoice thread_choice;
    {
      const dmx::quant::ModelConfig cfg = dmx::quant::load_config(model_dir);
      dmx::quant::check_pass_fits(cfg, batch, seqlen, dmx::quant::Pass::Forward,
                                  "perplexity of " + model_dir + " (--batch x --seqlen)");
      // Ranks sharing a machine (LOCAL_WORLD_SIZE) share its cores by default.
      if (threads == 0 && dmx::dist::local_world_size() > 1)
        threads = std::max(1, dmx::quant::available_cores() / dmx::dist::local_world_size());
      thread_choice = dmx::quant::configure_threads(
          threads, dmx::quant::thread_work_size(batch * seqlen, cfg.hidden_size));
      if (launch.rank == 0 && !out.empty() &&
          !std::filesystem::is_directory(std::filesystem::absolute(out).parent_path()))
        throw std::runtime_error("--out " + out + ": its directory does not exist");
    }
    if (tokenizer_path.empty())
      tokenizer_path = (std::filesystem::path(model_dir) / "tokenizer.json").string();
    // Every rank must evaluate the same windows of the same model: the rendezvous compares these.
    const std::string fingerprint = "model " + model_dir + "\ndata " + data + "\ntokenizer " +
                                    tokenizer_path + "\nseqlen " + std::to_string(seqlen) +
                                    "\nmax_windows " + std::to_string(max_windows) + "\nbatch " +
                                    std::to_string(batch) + "\ndtype " + dtype_name +
                                    "\nassignment " + assignment + "\nbackend " + backend_name;
    std::unique_ptr<dmx::dist::Group> group =
        dmx::dist::Group::join(launch, "dmx-eval", fingerprint);
    if (group->size() > 1) quiet = quiet || !group->root();
    const at::ScalarType dtype = dtype_name == "bfloat16" ? at::kBFloat16 : at::kFloat;
    dmx::quant::Tokenizer tok = dmx::quant::Tokenizer::load(tokenizer_path);
    const dmx::quant::Backend backend = *dmx::quant::parse_backend(backend_name);
    dmx::kernels::KernelConfig kcfg;
    if (threads > 0) kcfg.threads = threads;  // else the kernels' own default
    const bool packed = dmx::quant::is_packed_checkpoint(model_dir);
    dmx::quant::CausalLM model =
        dmx::quant::load_for_backend(model_dir, assignment, backend, dtype, kcfg);
    if (!quiet)
      std::cerr << "dmx-eval: loaded " << model.config().architecture_name << " ("
                << dmx::quant::parameter_count(model.config()) << " parameters) from " << model_dir
                << "; " << thread_choice.describe() << "\n";
    dmx::quant::PerplexityOptions opt;
    opt.seqlen = seqlen;
    opt.max_windows = max_windows;
    opt.batch = batch;
    opt.rank = group->rank();
    opt.world = group->size();
    opt.allreduce_sum = [&](std::vector<double>& v) { group->allreduce_sum(v); };
    dmx::ProgressLine progress("dmx-eval", "window", quiet);
    opt.progress = [&](int64_t done, int64_t total) { progress.update(done, total); };
    group->barrier();  // the ranks start evaluating together (their loading times differ)
    dmx::quant::PerplexityResult r = dmx::quant::perplexity_of_file(model, tok, data, opt);
    nlohmann::json j = {{"model", model_dir},
                        {"architecture", model.config().architecture_name},
                        {"data", data},
                        {"dtype", dtype_name},
                        {"backend", backend_name},
                        {"assignment", assignment},
                        {"packed_checkpoint", packed},
                        {"seqlen", seqlen},
                        {"tokens_in_file", r.tokens_in_file},
                        {"windows", r.windows},
                        {"windows_available", r.windows_available},
                        {"predicted_tokens", r.predicted_tokens},
                        {"mean_nll", r.mean_nll},
                        {"perplexity", r.perplexity},
                        {"seconds", r.seconds},
                        {"threads", thread_choice.threads},
                        {"world_size", group->size()},
                        {"tokens_per_second", r.windows * seqlen / std::max(r.seconds, 1e-9)},
                        {"window_nll", r.window_nll}};
    if (!group->root()) {  // rank 0 reports and writes; the barrier passes its failure on
      group->barrier();
      return 0;
    }
    std::printf("perplexity %.4f (mean NLL %.6f over %lld tokens, %lld windows of %lld)\n",
                r.perplexity, r.mean_nll, static_cast<long long>(r.predicted_tokens),
                static_cast<long long>(r.windows), static_cast<long long>(seqlen));
    if (!out.empty()) dmx::write_json_atomic(out, j);
    group->barrier();
    return 0;
  });
}
