// One dmx-search run: loading the context, the cost models, the baselines, one method at one
// budget and its outputs.
#include "search_tool.h"

namespace dmx::quant::search_tool {

MxFormat need_format(const std::string& s, const char* what) {
  auto f = parse_format(s);
  if (!f) throw UsageError(std::string(what) + ": unknown format '" + s + "'");
  return *f;
}

const CostModel& Context::cost_model(int rungs) {
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

std::vector<int32_t> tokenize_file(const Tokenizer& tok, const std::string& path) {
  try {
    return tok.encode(read_regular_file(path, "text file", int64_t(1) << 30));
  } catch (const InputFileError& e) {
    throw UsageError(e.what());  // a --data the tool cannot take
  }
}

void use_seed(Context& c, uint64_t seed) {
  c.s.seed = seed;
  try {
    c.calib = make_windows(c.calib_tokens, c.s.seqlen, c.s.calib_windows, seed);
    c.kl_windows = make_windows(c.calib_tokens, c.s.seqlen, c.s.kl_windows, seed);
  } catch (const std::invalid_argument& e) {
    throw UsageError(c.s.data + ": " + e.what());
  }
  c.kl_sens.reset();  // the KL ranking is measured on the seed's windows
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
  use_seed(c, s.seed);
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
  if (s.cost_model == "sim") {  // the workload's shape matters only to the simulator's costs
    j["phase"] = s.phase;
    j["generate"] = s.generate;
    j["context"] = s.context;
    j["sim_batch"] = s.sim_batch;
  }
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

json run_one(Context& c, const std::string& method, const std::string& budget_text,
             const std::string& dir, const std::string& uniform_fmt) {
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
    ProgressLine progress("dmx-search", method + " step", !c.root(), 5.0);
    o.progress = [&](const SearchProgress& p) {
      char extra[200];
      std::snprintf(extra, sizeof extra,
                    "loss %.4f %s %.4f soft-bits %.3f frac %.3f T' %.2f %.3g steps/s peak RSS "
                    "%lld MiB%s",
                    p.loss, o.loss.c_str(), p.ce, p.soft_bits, p.soft_fraction, p.t_prime,
                    p.steps_per_s, static_cast<long long>(peak_rss_bytes() >> 20),
                    p.resumed ? " (resumed)" : "");
      progress.update(p.step, p.steps, extra);
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
  m["window_nll"] = pr.window_nll;  // per evaluation window: paired bootstraps (summarize.py)
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
  write_json_atomic(dir + "/assignment.json", assignment_json(a, cm, *c.model));
  write_json_atomic(dir + "/metrics.json", m);
  std::fprintf(
      stderr,
      "dmx-search: %s budget %s: ppl %.4f, %.3f bits, cost %.6g %s (%.3f of range), %.1f s\n",
      method.c_str(), budget_text.empty() ? "-" : budget_text.c_str(), pr.perplexity, a.avg_bits,
      a.total_cost, cm.unit.c_str(), cm.fraction(a.total_cost), wall);
  return m;
}

}  // namespace dmx::quant::search_tool
