// dmx-search: per-layer MX format assignment (dMX, KL ranking, uniform) and budget sweeps.
// Data parallel over processes (dmx/dist.h): MASTER_ADDR/MASTER_PORT/RANK/WORLD_SIZE or the same
// flags; --batch is the global batch, rank 0 alone writes outputs and checkpoints.
#include "search_tool.h"

namespace {

using namespace dmx;
using namespace dmx::quant;
using namespace dmx::quant::search_tool;

void add_common(CLI::App& app, Settings& s) {
  app.add_option("--model", s.model_dir,
                 "model directory (config.json, safetensors, tokenizer.json); required");
  app.add_option("--data", s.data, "calibration text (raw, WikiText-2 layout); required");
  app.add_option("--eval-data", s.eval_data, "perplexity text (default: --data)");
  app.add_option("--tokenizer", s.tokenizer, "tokenizer.json (default: the model's)");
  app.add_option("--cost-model", s.cost_model, "bits | sim")->capture_default_str();
  app.add_flag("--weighted", s.weighted, "bits model: weight layers by parameter count");
  app.add_option("--arch", s.arch,
                 "architecture config (sim cost model), e.g. sim/configs/edge_npu.json");
  app.add_option("--metric", s.metric, "sim metric: cycles | energy | dram_bytes")
      ->capture_default_str();
  app.add_option("--tokens", s.tokens, "sim: prefill tokens per sequence (default: --seqlen)");
  app.add_option("--phase", s.phase,
                 "sim: prefill | decode | both (a prefill of --tokens plus --generate decode "
                 "steps at the mean context)")
      ->capture_default_str();
  app.add_option("--generate", s.generate, "sim, phase both: decode steps per request")
      ->capture_default_str();
  app.add_option("--context", s.context,
                 "sim: decode context (0: --tokens for decode, --tokens + --generate/2 for both)")
      ->capture_default_str();
  app.add_option("--sim-batch", s.sim_batch, "sim: sequences served together")
      ->capture_default_str();
  app.add_option("--space", s.space, "em: E(2+b)M(1+b); e2m: E2M(1+b)")->capture_default_str();
  app.add_option("--rungs", s.rungs, "format ladder: 2 (MXFP4/MXFP8) or 3 (+ MXFP6 E3M2)")
      ->capture_default_str();
  app.add_flag("--untied", s.untied, "separate weight and activation offsets");
  app.add_option("--steps", s.steps, "dMX steps")->capture_default_str();
  app.add_option("--lr", s.lr, "SGD learning rate")->capture_default_str();
  app.add_option("--momentum", s.momentum, "SGD Nesterov momentum")->capture_default_str();
  app.add_option("--lambda", s.lambda, "hinge regularizer weight")->capture_default_str();
  app.add_option("--batch", s.batch,
                 "calibration windows per step (the global batch, split over the ranks)")
      ->capture_default_str();
  app.add_option("--micro-batch", s.micro_batch,
                 "windows per forward/backward pass (0: each rank's whole share); a run on N "
                 "ranks equals one process with --micro-batch batch/N bit for bit")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--seqlen", s.seqlen, "tokens per window (calibration and perplexity)")
      ->capture_default_str();
  app.add_option("--calib-windows", s.calib_windows, "calibration windows (0: all)")
      ->capture_default_str();
  app.add_option("--eval-windows", s.eval_windows, "perplexity windows (0: all)")
      ->capture_default_str();
  app.add_option("--kl-windows", s.kl_windows, "windows for the KL ranking")->capture_default_str();
  app.add_option("--seed", s.seed,
                 "seed: calibration windows (0: the text's first ones; else a random draw) and "
                 "their order")
      ->capture_default_str();
  app.add_option(
         "--threads", s.threads,
         "compute threads, exactly (0: chosen from --batch x --seqlen, see quant/README.md)")
      ->check(CLI::Range(0, kMaxThreads));
  app.add_option("--checkpoint-every", s.checkpoint_every, "steps between checkpoints")
      ->capture_default_str();
  app.add_flag("--fresh", s.fresh, "ignore (delete) an existing checkpoint");
  app.add_option("--baselines", s.baselines,
                 "FP32 and uniform-format perplexities on the same windows in metrics.json "
                 "(on | off: six extra evaluations per invocation)")
      ->check(CLI::IsMember({"on", "off"}))
      ->capture_default_str();
  app.add_option("--rotate", s.rotate,
                 "rotate the model before quantizing: hadamard (a randomized Hadamard of the "
                 "residual stream folded into the weights, online Hadamard before down_proj)")
      ->check(CLI::IsMember({"none", "hadamard"}))
      ->capture_default_str();
  app.add_option("--rotate-seed", s.rotate_seed, "--rotate hadamard: seed of the random signs")
      ->capture_default_str();
  app.add_option("--quantize-embed", s.quant_embed, "also quantize the embedding table (format)");
  app.add_option("--quantize-lm-head", s.quant_head, "also quantize the lm_head weight (format)");
  app.add_option("--stop-after", s.stop_after, "stop after N steps as if killed (resume testing)");
  app.add_option("--budget-projection", s.budget_projection,
                 "dMX: after the hard threshold, move the least confident layers until the cost "
                 "is within --budget-tolerance of the budget (on | off: the paper's threshold)")
      ->check(CLI::IsMember({"on", "off"}))
      ->capture_default_str();
  app.add_option("--theta-max", s.theta_max,
                 "dMX: project theta onto [0, X] after each step (0: unbounded, as published)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--loss", s.loss,
                 "dMX task loss: ce (next-token cross-entropy, as published) | kd (KL divergence "
                 "to the unquantized model's next-token distribution)")
      ->check(CLI::IsMember({"ce", "kd"}))
      ->capture_default_str();
  dist::add_dist_options(app, s.dist);
  app.add_option("--budget-tolerance", s.budget_tolerance,
                 "budget projection tolerance, a fraction of the all-low..all-high cost range")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "dmx-search: per-layer MX format assignment (dMX, KL ranking, uniform) under an "
      "average-bit or simulator-cost budget"};
  Settings s;
  add_common(app, s);
  app.add_option("--method", s.method, "dmx | dmx3 | dmx-untied | kl | uniform")
      ->capture_default_str();
  app.add_option("--format", s.format, "uniform: the format (any of the six)")
      ->capture_default_str();
  app.add_option("--act-format", s.act_format, "uniform: activation format (default: --format)");
  app.add_option("--budget", s.budget,
                 "bits: average bits; sim: fraction of the all-MXFP4..all-MXFP8 cost, or a value "
                 "with a unit (e.g. 2.5Mcycles, 40uJ, 3MB)");
  app.add_option("--out", s.out, "output directory; required");
  Settings sw;
  CLI::App* sweep = app.add_subcommand(
      "sweep", "run several methods over a list of budgets; CSV and Pareto plot");
  add_common(*sweep, sw);
  sweep->add_option("--budgets", sw.budgets, "budgets (as --budget)")->required();
  sweep->add_option("--methods", sw.methods, "methods (dmx, dmx3, dmx-untied, kl, uniform)")
      ->capture_default_str();
  sweep->add_option("--seeds", sw.seeds,
                    "run every searched point once per seed (default: --seed); uniform points, "
                    "which do not depend on the seed, run once");
  sweep->add_option("--uniform-formats", sw.uniform_formats,
                    "uniform formats (default: the ladder's)");
  sweep->add_option("--out", sw.out, "report directory (sweep.csv, pareto.svg, runs/); required");
  sweep->add_option("--plot-x", sw.plot_x,
                    "x axis: achieved_bits | achieved_bits_weighted | cost_fraction");
  app.require_subcommand(0, 1);
  if (const auto rc = parse_cli(app, "dmx-search", argc, argv)) return *rc;
  return run_tool("dmx-search", [&] {
    Context c;
    if (sweep->parsed()) {
      c.s = sw;
      load_context(c);
      const int rc = run_sweep(c);
      c.group->barrier();  // a failure of rank 0's writes reaches every rank
      return rc;
    }
    c.s = s;
    load_context(c);
    run_one(c, s.method, s.budget, s.out);
    c.group->barrier();
    return 0;
  });
}
