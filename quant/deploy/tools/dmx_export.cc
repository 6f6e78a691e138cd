// dmx-export: writes a packed-MX checkpoint (schema dmx_mx v1, quant/deploy/README.md) of a Hugging
// Face model under a searched assignment.
//   dmx-export --model DIR --assignment assignment.json --out DIR2 [--force]
//   dmx-export --model DIR --format e2m1 [--act-format e2m1] --out DIR2
#include <dmx/cli.h>

#include <cstdio>
#include <filesystem>
#include <iostream>

#include "dmx/quant/config.h"
#include "dmx/quant/deploy.h"

int main(int argc, char** argv) {
  CLI::App app{
      "dmx-export: packed-MX checkpoint (MX element codes + E8M0 scales per decoder "
      "Linear, everything else unchanged) of a Hugging Face model under an assignment"};
  std::string model_dir, assignment, out, format, act_format, tokenizer;
  bool force = false, quiet = false;
  int threads = 0;
  app.add_option("--model", model_dir, "Hugging Face model directory (config.json, safetensors)")
      ->required();
  auto* a_opt = app.add_option("--assignment", assignment, "assignment.json written by dmx-search");
  auto* f_opt = app.add_option("--format", format, "every decoder Linear's weights in this format");
  app.add_option("--act-format", act_format, "with --format: activation format (default: --format)")
      ->needs(f_opt);
  a_opt->excludes(f_opt);
  app.add_option("--out", out, "output directory (written to a temporary, then renamed)")
      ->required();
  app.add_option("--tokenizer", tokenizer,
                 "tokenizer.json to copy (default: MODEL/tokenizer.json)");
  app.add_option("--threads", threads, "kernel threads (0: default)")
      ->check(CLI::NonNegativeNumber);
  app.add_flag("--force", force, "replace an existing non-empty --out directory");
  app.add_flag("--quiet", quiet, "print nothing on success");
  if (const auto rc = dmx::parse_cli(app, "dmx-export", argc, argv)) return *rc;
  return dmx::run_tool("dmx-export", [&] {
    using namespace dmx::quant;
    if (assignment.empty() && format.empty())
      throw dmx::UsageError("--assignment or --format: one of them is required");
    const ModelConfig cfg = load_config(model_dir);
    FormatAssignment a;
    if (!assignment.empty()) {
      const std::string text = dmx::read_regular_file(assignment, "assignment", 64 << 20);
      a = parse_assignment(text, assignment, cfg);
      if (assignment_rotation(text, assignment))
        throw dmx::UsageError(assignment +
                              ": searched on a Hadamard-rotated model; a packed checkpoint has no "
                              "place for the rotation's online transform yet (evaluate it with "
                              "dmx-eval --backend fake-quant)");
    } else {
      auto w = dmx::parse_format(format);
      auto x = dmx::parse_format(act_format.empty() ? format : act_format);
      if (!w || !x)
        throw dmx::UsageError("--format/--act-format: \"" + (!w ? format : act_format) +
                              "\" is not an MX format");
      a = uniform_assignment(cfg, *w, *x);
    }
    ExportOptions opt;
    opt.overwrite = force;
    opt.tokenizer_path = tokenizer;
    if (threads > 0) opt.kernel.threads = threads;
    const ExportStats st = export_packed(model_dir, a, out, opt);
    if (!quiet)
      std::printf(
          "dmx-export: %s: %lld packed Linears (%.3f avg bits), model.safetensors %llu bytes "
          "(packed weights %llu, dense %llu)\n",
          out.c_str(), static_cast<long long>(st.packed_linears), assignment_avg_bits(a),
          static_cast<unsigned long long>(st.safetensors_bytes),
          static_cast<unsigned long long>(st.packed_weight_bytes),
          static_cast<unsigned long long>(st.dense_bytes));
    return 0;
  });
}
