// dmx-search: per-layer MX format assignment (dMX, KL ranking, uniform) and budget sweeps.
// Data parallel over processes (dmx/dist.h): MASTER_ADDR/MASTER_PORT/RANK/WORLD_SIZE or the same
// flags; --batch is the global batch, rank 0 alone writes outputs and checkpoints.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <dmx/cli.h>
#include <dmx/dist.h>
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

namespace fs = std::filesystem;
using nlohmann::json;
using namespace dmx;
using namespace dmx::quant;

namespace {

using dmx::UsageError;  // exit 2 (dmx/util.h)

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
  std::string plot_x;
  dist::LaunchFlags dist;
};

MxFormat need_format(const std::string& s, const char* what) {
  auto f = parse_format(s);
  if (!f) throw UsageError(std::string(what) + ": unknown format '" + s + "'");
  return *f;
}

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

  const CostModel& cost_model(int rungs) {
    auto it = cost_models.find(rungs);
    if (it != cost_models.end()) return it->second;
    const Ladder ladder = make_ladder(space, rungs);
    CostModel cm;
    if (s.cost_model == "bits") {
      cm = bits_cost_model(*model, ladder, s.weighted);
    } else {
      const SimCostOptions o = sim_options();
      std::cerr << "dmx-search: simulating the whole-model cost (" << arch->name << ", " << o.phase
                << ": prefill " << o.tokens << " tokens, " << o.generate << " generated, batch "
                << o.batch << "; " << ladder.formats.size() << "x" << ladder.formats.size()
                << " format pairs)...\n";
      const auto t0 = std::chrono::steady_clock::now();
      cm = sim_cost_model(*model, *arch, o, ladder);
      std::fprintf(stderr,
                   "dmx-search: cost model done in %.1f s: all-low %.6g, all-high %.6g %s, of "
                   "which %.6g fixed (attention, lm_head, embeddings, KV cache)\n",
                   std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
                   cm.total_low(), cm.total_high(), cm.unit.c_str(), cm.fixed);
    }
    return cost_models.emplace(rungs, std::move(cm)).first->second;
  }
};

json run_settings(const Settings& s);

std::vector<int32_t> tokenize_file(const Tokenizer& tok, const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw UsageError(path + ": cannot open the text file");
  std::stringstream ss;
  ss << f.rdbuf();
  return tok.encode(ss.str());
}

void load_context(Context& c) {
  Settings& s = c.s;
  if (s.model_dir.empty()) throw UsageError("--model is required (run with --help)");
  if (s.data.empty()) throw UsageError("--data is required (run with --help)");
  if (s.out.empty()) throw UsageError("--out is required (run with --help)");
  if (!fs::is_directory(s.model_dir)) throw UsageError(s.model_dir + ": not a model directory");
  if (!fs::is_regular_file(s.data)) throw UsageError(s.data + ": no such calibration text file");
  if (s.eval_data.empty()) s.eval_data = s.data;
  if (!fs::is_regular_file(s.eval_data)) throw UsageError(s.eval_data + ": no such text file");
  auto sp = parse_space(s.space);
  if (!sp) throw UsageError("--space: '" + s.space + "' is neither em nor e2m");
  c.space = *sp;
  if (s.cost_model != "bits" && s.cost_model != "sim")
    throw UsageError("--cost-model: '" + s.cost_model + "' is neither bits nor sim");
  if (s.cost_model == "sim") {
    if (s.arch.empty()) throw UsageError("--cost-model sim needs --arch FILE");
    auto m = parse_metric(s.metric);
    if (!m) throw UsageError("--metric: '" + s.metric + "' is not cycles, energy or dram_bytes");
    c.metric = *m;
    try {
      c.arch = std::make_unique<sim::ArchConfig>(sim::load_arch(s.arch));
    } catch (const std::exception& e) {
      throw UsageError(e.what());
    }
    if (s.tokens <= 0) s.tokens = s.seqlen;
    try {
      c.sim_options().phases();  // validates --phase, --generate, --context, --sim-batch
    } catch (const std::invalid_argument& e) {
      throw UsageError(std::string("sim cost: ") + e.what());
    }
  }
  if (s.seqlen < 2 || s.seqlen > (1 << 20)) throw UsageError("--seqlen must be in [2, 1048576]");
  const dist::Launch launch = dist::resolve_launch(s.dist);
  if (s.batch < 1) throw UsageError("--batch must be at least 1");
  if (s.batch % launch.world_size != 0)
    throw UsageError(
        "--batch " + std::to_string(s.batch) +
        " (the global batch) is not a multiple of WORLD_SIZE=" + std::to_string(launch.world_size));
  const int64_t micro = s.micro_batch > 0 ? s.micro_batch : s.batch / launch.world_size;
  if ((s.batch / launch.world_size) % micro != 0)
    throw UsageError("--micro-batch " + std::to_string(micro) + " does not divide each rank's " +
                     std::to_string(s.batch / launch.world_size) + " windows of --batch " +
                     std::to_string(s.batch) + " (WORLD_SIZE=" + std::to_string(launch.world_size) +
                     ")");
  s.micro_batch = micro;  // the effective value: part of the settings records
  // Fail on an impossible window or output before the model is loaded and any work is done.
  {
    const ModelConfig cfg = load_config(s.model_dir);
    if (s.rotate == "hadamard")
      for (int64_t n : {cfg.hidden_size, cfg.intermediate_size})
        if (!HadamardTransform::supported(n))
          throw UsageError("--rotate hadamard: " + s.model_dir + ": size " + std::to_string(n) +
                           " has no Hadamard construction (2^k times 1 or a Paley order)");
    check_pass_fits(cfg, micro, s.seqlen, Pass::Backward,
                    "a dMX pass on " + s.model_dir + " (--micro-batch x --seqlen)");
    check_pass_fits(cfg, 8, s.seqlen, Pass::Forward, "perplexity on " + s.model_dir);
    try {
      // Ranks sharing a machine (LOCAL_WORLD_SIZE) share its cores by default.
      int threads = s.threads;
      if (threads == 0 && dist::local_world_size() > 1)
        threads = std::max(1, available_cores() / dist::local_world_size());
      c.threads = configure_threads(threads, thread_work_size(micro * s.seqlen, cfg.hidden_size));
    } catch (const std::invalid_argument& e) {
      throw UsageError(e.what());
    }
    const fs::path parent = fs::absolute(s.out).parent_path();
    if (launch.rank == 0 && !fs::is_directory(parent))
      throw UsageError("--out " + s.out + ": its parent directory does not exist");
  }
  {
    // Every rank must run the same search: the rendezvous compares these settings.
    json fp = run_settings(s);
    fp["method"] = s.method;
    fp["budget"] = s.budget;
    fp["budgets"] = s.budgets;
    fp["methods"] = s.methods;
    fp["uniform_formats"] = s.uniform_formats;
    fp["format"] = s.format;
    fp["act_format"] = s.act_format;
    fp["out"] = s.out;
    fp["fresh"] = s.fresh;
    fp["stop_after"] = s.stop_after;
    fp["checkpoint_every"] = s.checkpoint_every;
    c.group = dist::Group::join(launch, "dmx-search", fp.dump(0));
  }
  std::cerr << "dmx-search: " << (c.group->size() > 1 ? c.group->who() + ": " : "") << "loading "
            << s.model_dir << "; " << c.threads.describe() << "\n";
  c.model = std::make_unique<CausalLM>(CausalLM::load(s.model_dir));
  if (s.rotate == "hadamard") c.model->rotate_hadamard(s.rotate_seed);
  const Tokenizer tok = Tokenizer::load(s.tokenizer.empty() ? s.model_dir : s.tokenizer);
  c.calib_tokens = tokenize_file(tok, s.data);
  c.eval_tokens = s.eval_data == s.data ? c.calib_tokens : tokenize_file(tok, s.eval_data);
  try {
    c.calib = make_windows(c.calib_tokens, s.seqlen, s.calib_windows);
    c.kl_windows = make_windows(c.calib_tokens, s.seqlen, s.kl_windows);
  } catch (const std::invalid_argument& e) {
    throw UsageError(s.data + ": " + e.what());
  }
  if (!s.quant_embed.empty())
    quantize_embedding_weights(*c.model, need_format(s.quant_embed, "--quantize-embed"), true,
                               false);
  if (!s.quant_head.empty())
    quantize_embedding_weights(*c.model, need_format(s.quant_head, "--quantize-lm-head"), false,
                               true);
}

// {"kind": "hadamard", "seed": N} for a rotated model (deploy's assignment_rotation reads it).
json rotation_json(const CausalLM& m) {
  if (!m.rotation_seed()) return nullptr;
  return {{"kind", "hadamard"}, {"seed", *m.rotation_seed()}};
}

json assignment_json(const Assignment& a, const CostModel& cm, const CausalLM& m) {
  json layers = json::array();
  for (const auto& l : a.layers)
    layers.push_back({{"layer", l.name},
                      {"weight_format", format_name(l.wfmt)},
                      {"act_format", format_name(l.afmt)},
                      {"cost", l.cost}});
  return {{"layers", layers},           {"rotation", rotation_json(m)},
          {"total_cost", a.total_cost}, {"cost_unit", cm.unit},
          {"avg_bits", a.avg_bits},     {"avg_bits_weighted", a.avg_bits_weighted}};
}

// The settings that shape a sweep point's result; a finished point is reused only when they match.
json run_settings(const Settings& s) {
  json j = {{"model", s.model_dir},
            {"data", s.data},
            {"eval_data", s.eval_data},
            {"tokenizer", s.tokenizer},
            {"cost_model", s.cost_model},
            {"weighted", s.weighted},
            {"arch", s.arch},
            {"metric", s.metric},
            {"tokens", s.tokens},
            {"phase", s.phase},
            {"generate", s.generate},
            {"context", s.context},
            {"sim_batch", s.sim_batch},
            {"space", s.space},
            {"rungs", s.rungs},
            {"untied", s.untied},
            {"steps", s.steps},
            {"lr", s.lr},
            {"momentum", s.momentum},
            {"lambda", s.lambda},
            {"batch", s.batch},
            {"loss", s.loss},
            {"theta_max", s.theta_max},
            {"budget_projection", s.budget_projection},
            {"budget_tolerance", s.budget_tolerance},
            {"seqlen", s.seqlen},
            {"calib_windows", s.calib_windows},
            {"eval_windows", s.eval_windows},
            {"kl_windows", s.kl_windows},
            {"seed", s.seed},
            {"quantize_embed", s.quant_embed},
            {"quantize_lm_head", s.quant_head}};
  if (s.rotate != "none") {  // absent when unrotated, so points of earlier sweeps still match
    j["rotate"] = s.rotate;
    j["rotate_seed"] = s.rotate_seed;
  }
  // Recorded only when the passes are smaller than the batch (records of one-pass runs, made
  // before the option existed, stay valid).
  if (s.micro_batch > 0 && s.micro_batch != s.batch) j["micro_batch"] = s.micro_batch;
  return j;
}

// The evaluation windows of every perplexity of a run, sharded over the ranks (each rank's
// log-probability sums all-reduced: the value is the one-process value).
PerplexityOptions eval_options(Context& c) {
  PerplexityOptions po;
  po.seqlen = c.s.seqlen;
  po.max_windows = c.s.eval_windows;
  po.batch = 4;
  po.rank = c.group->rank();
  po.world = c.group->size();
  po.allreduce_sum = [&c](std::vector<double>& v) { c.group->allreduce_sum(v); };
  return po;
}

// What a search result is compared with, on the same evaluation windows: FP32 and every uniform
// MX format (MXFP4 E2M1, MXFP6 E3M2 and E2M3, MXFP8 E4M3 and E5M2, MXINT8), weights and
// activations alike. Computed once per invocation (a sweep shares it; every rank takes part);
// leaves the Linears wrapped with no formats, as run_one expects to set them.
json baseline_perplexities(Context& c) {
  if (c.baselines) return *c.baselines;
  std::vector<MxLinearPtr> lins = wrap_decoder_linears(*c.model);
  const PerplexityOptions po = eval_options(c);
  json b = json::object();
  for (const auto& l : lins) l->set_fixed(std::nullopt, std::nullopt);
  b["fp32"] = perplexity(*c.model, c.eval_tokens, po).perplexity;
  for (MxFormat f : {MxFormat::E2M1, MxFormat::E3M2, MxFormat::E2M3, MxFormat::E4M3, MxFormat::E5M2,
                     MxFormat::INT8}) {
    for (const auto& l : lins) l->set_fixed(f, f);
    b[std::string("uniform_") + format_name(f)] =
        perplexity(*c.model, c.eval_tokens, po).perplexity;
  }
  for (const auto& l : lins) l->set_fixed(std::nullopt, std::nullopt);
  if (c.root()) std::cerr << "dmx-search: baselines: " << b.dump() << "\n";
  c.baselines = b;
  return b;
}

// One method at one budget: returns the metrics (and writes them + the assignment under `dir`).
json run_one(Context& c, const std::string& method, const std::string& budget_text,
             const std::string& dir, const std::string& uniform_fmt = "") {
  const Settings& s = c.s;
  const auto t0 = std::chrono::steady_clock::now();
  int rungs = s.rungs;
  bool untied = s.untied;
  std::string base = method;
  if (method == "dmx3") base = "dmx", rungs = 3;
  if (method == "dmx-untied") base = "dmx", untied = true;
  if (base != "dmx" && base != "kl" && base != "uniform")
    throw UsageError("--method: unknown method '" + method +
                     "' (dmx, dmx3, dmx-untied, kl, uniform)");
  const CostModel& cm = c.cost_model(base == "dmx" ? rungs : s.rungs);
  double budget = 0;
  if (base != "uniform") {
    if (budget_text.empty()) throw UsageError("--method " + method + " needs --budget");
    try {
      budget = parse_budget(budget_text, cm);
    } catch (const std::invalid_argument& e) {
      throw UsageError(std::string("--budget: ") + e.what());
    }
  }
  if (c.root()) fs::create_directories(dir);
  json m;
  if (s.baselines == "on") m["baselines"] = baseline_perplexities(c);
  Assignment a;
  if (base == "uniform") {
    const MxFormat w = need_format(uniform_fmt.empty() ? s.format : uniform_fmt, "--format");
    const MxFormat af = s.act_format.empty() || !uniform_fmt.empty()
                            ? w
                            : need_format(s.act_format, "--act-format");
    a = uniform_assignment(*c.model, cm, w, af);
    apply_assignment(*c.model, a);
  } else if (base == "kl") {
    if (!c.kl_sens) {
      std::cerr << "dmx-search: KL sensitivity of " << c.model->linear_names().size()
                << " layers on " << c.kl_windows.size(0) << " windows...\n";
      c.kl_sens = kl_sensitivity(*c.model, c.kl_windows, cm.ladder.formats.front());
    }
    a = kl_assignment(*c.model, cm, *c.kl_sens, budget);
    apply_assignment(*c.model, a);
    json sens = json::object();
    for (size_t l = 0; l < c.kl_sens->size(); ++l)
      sens[c.model->linear_names()[l]] = (*c.kl_sens)[l];
    m["kl_sensitivity"] = sens;
  } else {
    DmxOptions o;
    o.steps = s.steps;
    o.lr = s.lr;
    o.momentum = s.momentum;
    o.lambda = s.lambda;
    o.offsets.space = c.space;
    o.offsets.rungs = rungs;
    o.offsets.untied = untied;
    o.batch = s.batch;
    o.micro_batch = s.micro_batch;
    o.seed = s.seed;
    o.checkpoint = dir + "/checkpoint.json";
    o.checkpoint_every = s.checkpoint_every;
    o.stop_after = s.stop_after;
    o.budget_projection = s.budget_projection == "on";
    o.budget_tolerance = s.budget_tolerance;
    o.theta_max = s.theta_max;
    o.loss = s.loss;
    if (c.group->size() > 1) o.group = c.group.get();
    if (s.fresh && c.root()) fs::remove(o.checkpoint);
    const int every = std::max(1, s.steps / 20);
    o.progress = [&](const SearchProgress& p) {
      if (c.root() && (p.step % every == 0 || p.step == p.steps))
        std::fprintf(stderr,
                     "dmx-search: %s step %d/%d loss %.4f %s %.4f soft-bits %.3f frac %.3f "
                     "T' %.2f %.3g steps/s peak RSS %lld MiB%s\n",
                     method.c_str(), p.step, p.steps, p.loss, o.loss.c_str(), p.ce, p.soft_bits,
                     p.soft_fraction, p.t_prime, p.steps_per_s,
                     static_cast<long long>(peak_rss_bytes() >> 20), p.resumed ? " (resumed)" : "");
    };
    DmxResult r = dmx_search(*c.model, c.calib, cm, budget, o);
    if (r.stopped) {
      if (c.root())
        std::cerr << "dmx-search: stopped after step " << r.steps_done << " (checkpoint "
                  << o.checkpoint << ")\n";
      return json();
    }
    a = r.assignment;
    m["steps"] = r.steps_done;
    m["steps_per_s"] = r.steps_per_s;
    m["peak_rss_mib"] = peak_rss_bytes() >> 20;
    m["threads"] = c.threads.threads;
    m["search_seconds"] = r.seconds;
    m["resumed"] = r.resumed;
    m["theta_weight"] = r.theta_w;
    m["theta_max"] = o.theta_max;
    m["lr"] = o.lr;
    m["batch"] = o.batch;
    m["loss"] = o.loss;
    m["budget_projection"] = {
        {"enabled", o.budget_projection},
        {"tolerance_fraction", o.budget_tolerance},
        {"moves", r.projection_moves},
        {"threshold_bits", r.threshold_assignment.avg_bits},
        {"threshold_cost", r.threshold_assignment.total_cost},
        {"threshold_cost_fraction", cm.fraction(r.threshold_assignment.total_cost)}};
    m["theta_act"] = r.theta_a;
    m["loss_curve"] = {{"first_step", r.first_step}, {"ce", r.ce_curve}, {"loss", r.loss_curve}};
  }
  // Perplexity with exactly the discrete formats.
  const PerplexityResult pr = perplexity(*c.model, c.eval_tokens, eval_options(c));
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  m["method"] = method;
  if (base == "uniform") m["format"] = format_name(a.layers.front().wfmt);
  m["budget"] = budget_text;
  m["budget_absolute"] = base == "uniform" ? json(nullptr) : json(budget);
  m["budget_bits_equivalent"] =
      base == "uniform" ? json(nullptr) : json(cm.to_bits_equivalent(budget));
  m["perplexity"] = pr.perplexity;
  m["mean_nll"] = pr.mean_nll;
  m["eval_windows"] = pr.windows;
  m["achieved_bits"] = a.avg_bits;
  m["achieved_bits_weighted"] = a.avg_bits_weighted;
  m["achieved_cost"] = a.total_cost;
  m["cost_unit"] = cm.unit;
  m["cost_fraction"] = cm.fraction(a.total_cost);
  m["cost_model"] = s.cost_model;
  m["weighted"] = s.weighted;
  if (s.cost_model == "sim") {
    m["arch"] = s.arch;
    m["metric"] = s.metric;
    m["tokens"] = s.tokens;
    m["phase"] = s.phase;
    m["generate"] = s.generate;
    m["sim_batch"] = s.sim_batch;
    m["fixed_cost"] = cm.fixed;
    // The end-to-end saving: this assignment's whole-model cost against all-MXFP8 and all-MXFP4.
    m["cost_all_high"] = cm.total_high();
    m["cost_all_low"] = cm.total_low();
    m["saving_vs_all_high"] = 1.0 - a.total_cost / cm.total_high();
  }
  m["space"] = space_name(c.space);
  m["rungs"] = base == "dmx" ? rungs : s.rungs;
  m["untied"] = base == "dmx" ? untied : false;
  m["model"] = s.model_dir;
  m["seed"] = s.seed;
  m["wall_seconds"] = wall;
  m["rotation"] = rotation_json(*c.model);
  m["world_size"] = c.group->size();
  m["settings"] = run_settings(s);
  if (!c.root()) return m;
  write_file_atomic(dir + "/assignment.json", assignment_json(a, cm, *c.model).dump(2) + "\n");
  write_file_atomic(dir + "/metrics.json", m.dump(2) + "\n");
  std::fprintf(
      stderr,
      "dmx-search: %s budget %s: ppl %.4f, %.3f bits, cost %.6g %s (%.3f of range), %.1f s\n",
      method.c_str(), budget_text.empty() ? "-" : budget_text.c_str(), pr.perplexity, a.avg_bits,
      a.total_cost, cm.unit.c_str(), cm.fraction(a.total_cost), wall);
  return m;
}

std::string csv_escape(const std::string& s) {
  return s.find_first_of(",\"") == std::string::npos ? s : "\"" + s + "\"";
}

// "" when the point at `dir` has to run, "=" + its metrics when a finished point of an earlier
// (killed) sweep with the same settings can be reused; throws for one made with other settings.
std::string reuse_decision(const Settings& s, const std::string& dir) {
  if (!fs::exists(dir + "/metrics.json")) return "";
  std::ifstream f(dir + "/metrics.json");
  json m;
  try {
    f >> m;
  } catch (const std::exception&) {
    throw std::runtime_error(dir + "/metrics.json: not a metrics file; delete it");
  }
  const json want = run_settings(s);
  const json have = m.value("settings", json());
  if (have != want) {
    std::string what = "has no settings record";
    for (auto it = want.begin(); it != want.end(); ++it)
      if (have.is_object() && have.value(it.key(), json()) != it.value()) {
        what = "was made with " + it.key() + " = " + have.value(it.key(), json()).dump() +
               ", not " + it.value().dump();
        break;
      }
    throw std::runtime_error(dir + "/metrics.json: a finished point that " + what +
                             "; delete it or sweep into another --out");
  }
  return "=" + m.dump();
}

int run_sweep(Context& c) {
  Settings& s = c.s;
  if (s.budgets.empty()) throw UsageError("sweep: --budgets needs at least one budget");
  if (s.uniform_formats.empty())
    for (MxFormat f : make_ladder(c.space, 3 - (c.space == FormatSpace::E2M)).formats)
      s.uniform_formats.push_back(format_name(f));
  if (c.root()) fs::create_directories(s.out);
  std::vector<json> rows;
  auto point = [&](const std::string& method, const std::string& budget, const std::string& fmt) {
    std::string tag =
        method + (fmt.empty() ? "" : "_" + fmt) + (budget.empty() ? "" : "_" + budget);
    const std::string dir = s.out + "/runs/" + tag;
    // Rank 0 decides whether a finished point of an earlier (killed) sweep is reused and sends
    // the decision: "" (run it), "=" + its metrics (reuse), "!" + an error.
    std::string decision;
    if (c.root()) try {
        decision = reuse_decision(s, dir);
      } catch (const std::exception& e) {
        decision = std::string("!") + e.what();
      }
    c.group->broadcast(decision);
    if (!decision.empty() && decision[0] == '!') throw std::runtime_error(decision.substr(1));
    if (!decision.empty()) {
      if (c.root()) std::cerr << "dmx-search: sweep: reusing " << dir << "/metrics.json\n";
      rows.push_back(json::parse(decision.substr(1)));
      return;
    }
    json m = run_one(c, method, budget, dir, fmt);
    if (m.is_null()) throw std::runtime_error("sweep point " + tag + " stopped");
    rows.push_back(m);
  };
  for (const auto& method : s.methods) {
    if (method == "uniform") {
      for (const auto& f : s.uniform_formats) point("uniform", "", f);
    } else {
      for (const auto& b : s.budgets) point(method, b, "");
    }
  }
  // Unquantized reference.
  {
    for (auto& l : wrap_decoder_linears(*c.model)) l->set_fixed(std::nullopt, std::nullopt);
    const double ppl = perplexity(*c.model, c.eval_tokens, eval_options(c)).perplexity;
    json m = {{"method", "fp32"},
              {"perplexity", ppl},
              {"achieved_bits", 32.0},
              {"achieved_bits_weighted", 32.0},
              {"achieved_cost", nullptr},
              {"cost_fraction", nullptr},
              {"budget", ""},
              {"wall_seconds", 0.0}};
    rows.push_back(m);
  }
  if (!c.root()) return 0;  // rank 0 writes the table and the plot
  const bool sim = s.cost_model == "sim";
  std::ostringstream csv;
  csv << "method,format,budget,perplexity,achieved_bits,achieved_bits_weighted,achieved_cost,"
         "cost_unit,cost_fraction,steps_per_s,wall_seconds\n";
  auto num = [](const json& v) {
    if (v.is_null()) return std::string();
    std::ostringstream o;
    o.precision(10);
    o << v.get<double>();
    return o.str();
  };
  for (const auto& m : rows) {
    csv << csv_escape(m.value("method", "")) << "," << m.value("format", "") << ","
        << csv_escape(m.value("budget", "")) << "," << num(m["perplexity"]) << ","
        << num(m["achieved_bits"]) << "," << num(m["achieved_bits_weighted"]) << ","
        << num(m.value("achieved_cost", json())) << "," << m.value("cost_unit", "") << ","
        << num(m.value("cost_fraction", json())) << "," << num(m.value("steps_per_s", json()))
        << "," << num(m["wall_seconds"]) << "\n";
  }
  write_file_atomic(s.out + "/sweep.csv", csv.str());
  std::cerr << "dmx-search: wrote " << s.out << "/sweep.csv\n";
  // Pareto plot (gnuplot, SVG): perplexity against achieved bits or cost fraction.
  const std::string xcol = s.plot_x.empty() ? (sim ? "cost_fraction" : "achieved_bits") : s.plot_x;
  const int xi = xcol == "cost_fraction" ? 9 : xcol == "achieved_bits_weighted" ? 6 : 5;
  if (std::system("command -v gnuplot >/dev/null 2>&1") == 0) {
    std::ostringstream gp;
    const std::string svg = s.out + "/pareto.svg";
    gp << "set terminal svg size 800,520 dynamic noenhanced background rgb 'white'\nset output '"
       << svg << ".tmp'\nset datafile separator ','\nset key outside right\nset grid\n"
       << "set xlabel '"
       << (xi == 9   ? "achieved cost (fraction of the MXFP4..MXFP8 range, " + s.metric + ")"
           : xi == 6 ? "achieved bits (parameter-weighted)"
                     : "achieved bits")
       << "'\n"
       << "set ylabel 'perplexity'\nset title 'dMX Pareto: "
       << fs::path(s.model_dir).filename().string()
       << (sim ? " on " + fs::path(s.arch).stem().string() : std::string(" (bits)"))
       << (s.rotate != "none" ? ", rotated (" + s.rotate + ")" : std::string()) << "'\nplot ";
    bool first = true;
    for (const auto& method : s.methods) {
      if (!first) gp << ", ";
      first = false;
      gp << "'" << s.out << "/sweep.csv' using (strcol(1) eq '" << method << "' ? $" << xi
         << " : 1/0):4 " << (method == "uniform" ? "with points pt 7 ps 1.2" : "with linespoints")
         << " title '" << method << "'";
    }
    // The uniform points named by their format, the FP32 model as a dashed line.
    if (std::find(s.methods.begin(), s.methods.end(), "uniform") != s.methods.end())
      gp << ", '" << s.out << "/sweep.csv' using (strcol(1) eq 'uniform' ? $" << xi
         << " : 1/0):4:2 with labels offset 0,0.8 notitle";
    for (const auto& m : rows)
      if (m.value("method", "") == "fp32")
        gp << ", " << num(m["perplexity"]) << " with lines dt 2 lc rgb 'black' title 'FP32'";
    gp << "\n";
    const std::string script = s.out + "/pareto.gp";
    write_file_atomic(script, gp.str());
    if (std::system(("gnuplot '" + script + "' 2>/dev/null").c_str()) == 0) {
      fs::rename(svg + ".tmp", svg);
      std::cerr << "dmx-search: wrote " << svg << "\n";
    } else {
      fs::remove(svg + ".tmp");
      std::cerr << "dmx-search: gnuplot failed; the CSV is written, the plot is not\n";
    }
  } else {
    std::cerr << "dmx-search: gnuplot not found; the CSV is written, the plot is not\n";
  }
  return 0;
}

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
  app.add_option("--seed", s.seed, "seed (calibration window order)")->capture_default_str();
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
