// dmx-search's pieces, shared by its files: the settings of a run, the context loaded once per
// invocation, one run (dmx_search_run.cc) and the sweep (dmx_search_sweep.cc).
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <dmx/cli.h>
#include <dmx/dist.h>
#include <dmx/json.h>
#include <dmx/progress.h>
#include <dmx/quant/eval.h>
#include <dmx/quant/memory.h>
#include <dmx/quant/rotate.h>
#include <dmx/quant/search.h>
#include <dmx/quant/threads.h>
#include <dmx/quant/tokenizer.h>
#include <dmx/sim.h>
#include <dmx/util.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

namespace dmx::quant::search_tool {

namespace fs = std::filesystem;
using dmx::UsageError;  // exit 2 (dmx/util.h)
using nlohmann::json;

struct Settings {
  std::string model_dir, data, eval_data, tokenizer, out;
  std::string method = "dmx", format = "mxfp4", act_format, budget;
  std::string cost_model = "bits", arch, metric = "cycles", space = "em";
  bool weighted = false, untied = false, fresh = false;
  std::string baselines = "on";  // FP32 / uniform perplexities in every metrics.json
  int rungs = 2, steps = 400, threads = 0, checkpoint_every = 10;
  double lr = 1.5, momentum = 0.99, lambda = 5.0;
  int64_t batch = 1, micro_batch = 0, seqlen = 128, calib_windows = 32, eval_windows = 0,
          kl_windows = 4;
  int64_t tokens = 0;
  std::string phase = "both";  // sim: prefill | decode | both
  int64_t generate = 128, context = 0, sim_batch = 1;
  uint64_t seed = 0;
  std::string quant_embed, quant_head;
  int stop_after = 0;  // testing: stop as if killed after N steps
  std::string budget_projection = "on";
  double budget_tolerance = 0.02;
  double theta_max = 0.0;
  std::string loss = "ce";
  std::string rotate = "none";  // none | hadamard (CausalLM::rotate_hadamard)
  uint64_t rotate_seed = 0;
  // sweep
  std::vector<std::string> budgets;
  std::vector<std::string> methods{"dmx", "kl", "uniform"};
  std::vector<std::string> uniform_formats;
  std::vector<uint64_t> seeds;  // empty: --seed alone
  std::string plot_x;
  dist::LaunchFlags dist;
};

MxFormat need_format(const std::string& s, const char* what);

// Everything loaded once per invocation.
struct Context {
  Settings s;
  std::unique_ptr<CausalLM> model;
  std::vector<int32_t> calib_tokens, eval_tokens;
  at::Tensor calib, kl_windows;
  std::unique_ptr<sim::ArchConfig> arch;
  std::map<int, CostModel> cost_models;  // by rungs
  std::optional<std::vector<double>> kl_sens;
  std::optional<json> baselines;  // baseline_perplexities, once per invocation
  FormatSpace space = FormatSpace::EM;
  SimMetric metric = SimMetric::Cycles;
  ThreadChoice threads;
  std::unique_ptr<dist::Group> group;  // world size 1 without a distributed launch
  bool root() const { return group->root(); }

  SimCostOptions sim_options() const {
    SimCostOptions o;
    o.metric = metric;
    o.phase = s.phase;
    o.tokens = s.tokens;
    o.generate = s.generate;
    o.context = s.context;
    o.batch = s.sim_batch;
    return o;
  }

  // The cost model of a ladder of `rungs`, built on first use (the simulator runs once).
  const CostModel& cost_model(int rungs);
};

// Makes `seed` the run's seed: draws its calibration and KL windows (make_windows).
void use_seed(Context& c, uint64_t seed);
// Loads the model (rotated when asked), the tokens and windows, the cost inputs; joins the group.
void load_context(Context& c);
// The settings that shape a sweep point's result; a finished point is reused only when they match.
json run_settings(const Settings& s);
// The evaluation windows of every perplexity of a run, sharded over the group's ranks.
PerplexityOptions eval_options(Context& c);
// One method at one budget: returns the metrics (and writes them + the assignment under `dir`,
// rank 0); null when the search stopped early (--stop-after).
json run_one(Context& c, const std::string& method, const std::string& budget_text,
             const std::string& dir, const std::string& uniform_fmt = "");
// Several methods over the budgets, sweep.csv and pareto.svg; resumes a killed sweep.
int run_sweep(Context& c);

}  // namespace dmx::quant::search_tool
