// dMX search, cost models and baselines.
#include "dmx/quant/search.h"

#include <ATen/ATen.h>
#include <dmx/dist.h>
#include <dmx/quant/search_checkpoint.h>
#include <dmx/sim.h>
#include <dmx/util.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <sstream>
#include <stdexcept>

namespace dmx::quant {

// ---- Ladders and cost models -----------------------------------------------------------------
Ladder make_ladder(FormatSpace space, int rungs) {
  Ladder l;
  l.space = space;
  if (rungs == 3) {
    if (space != FormatSpace::EM)
      throw std::invalid_argument("the three-rung ladder needs the E(2+b)M(1+b) space (em)");
    l.position = {0, 1, 2};
  } else if (rungs == 2) {
    l.position = {0, 2};
  } else {
    throw std::invalid_argument("a ladder has 2 or 3 rungs, not " + std::to_string(rungs));
  }
  for (int p : l.position) l.formats.push_back(format_at(p, space));
  return l;
}

double CostModel::total(const std::vector<int>& wrung, const std::vector<int>& arung) const {
  double t = fixed;
  for (size_t l = 0; l < cost.size(); ++l) t += cost[l][wrung[l]][arung[l]];
  return t;
}
double CostModel::total_low() const {
  return total(std::vector<int>(cost.size(), 0), std::vector<int>(cost.size(), 0));
}
double CostModel::total_high() const {
  const int top = static_cast<int>(ladder.formats.size()) - 1;
  return total(std::vector<int>(cost.size(), top), std::vector<int>(cost.size(), top));
}
double CostModel::fraction(double t) const {
  const double lo = total_low(), hi = total_high();
  return hi > lo ? (t - lo) / (hi - lo) : 0.0;
}
double CostModel::to_bits_equivalent(double t) const {
  if (kind == "bits") return t;
  const double lo = format_bits(ladder.formats.front()), hi = format_bits(ladder.formats.back());
  return lo + (hi - lo) * fraction(t);
}

std::vector<int64_t> linear_param_counts(const CausalLM& model) {
  std::vector<int64_t> out;
  for (const auto& n : model.linear_names()) {
    LinearPtr l = model.linear(n);
    out.push_back(l->in_features() * l->out_features());
  }
  return out;
}

CostModel bits_cost_model(const CausalLM& model, const Ladder& ladder, bool weighted) {
  CostModel cm;
  cm.kind = "bits";
  cm.unit = "bits";
  cm.ladder = ladder;
  const std::vector<int64_t> params = linear_param_counts(model);
  const double sum = std::accumulate(params.begin(), params.end(), 0.0);
  std::vector<double> share;
  for (int64_t p : params) share.push_back(weighted ? p / sum : 1.0 / params.size());
  const size_t K = ladder.formats.size();
  for (double w : share) {
    std::vector<std::vector<double>> t(K, std::vector<double>(K));
    for (size_t i = 0; i < K; ++i)
      for (size_t j = 0; j < K; ++j)
        t[i][j] = w * 0.5 * (format_bits(ladder.formats[i]) + format_bits(ladder.formats[j]));
    cm.cost.push_back(t);
  }
  cm.pair_costs = [share](MxFormat w, MxFormat a) {
    std::vector<double> out;
    for (double s : share) out.push_back(s * 0.5 * (format_bits(w) + format_bits(a)));
    return out;
  };
  return cm;
}

std::optional<SimMetric> parse_metric(const std::string& s) {
  if (s == "cycles") return SimMetric::Cycles;
  if (s == "energy") return SimMetric::Energy;
  if (s == "dram_bytes") return SimMetric::DramBytes;
  return std::nullopt;
}
const char* metric_name(SimMetric m) {
  switch (m) {
    case SimMetric::Cycles:
      return "cycles";
    case SimMetric::Energy:
      return "energy";
    case SimMetric::DramBytes:
      return "dram_bytes";
  }
  return "?";
}

namespace {
double metric_value(const sim::GemmCost& c, SimMetric m) {
  switch (m) {
    case SimMetric::Cycles:
      return static_cast<double>(c.cycles);
    case SimMetric::Energy:
      return c.energy_pj;
    case SimMetric::DramBytes:
      return static_cast<double>(c.dram_bytes);
  }
  return 0;
}

// The simulator's costs of one model: per Linear (model order) for any pair, and the fixed rest.
struct SimCosts {
  std::vector<sim::Workload> workloads;
  std::vector<double> weights;  // per workload (phase)
  std::vector<std::string> names;
  sim::ArchConfig arch;
  SimMetric metric;
  std::shared_ptr<sim::TileCache> cache = std::make_shared<sim::TileCache>();

  // Metric of every Linear for each requested pair; `fixed` gets the unassigned operations.
  std::map<std::pair<int, int>, std::vector<double>> layers(const std::vector<MxFormat>& wf,
                                                            const std::vector<MxFormat>& af,
                                                            double* fixed) const {
    std::map<std::string, size_t> index;
    for (size_t i = 0; i < names.size(); ++i) index[names[i]] = i;
    sim::TableOptions to;
    to.weight_formats = wf;
    to.act_formats = af;
    std::map<std::pair<int, int>, std::vector<double>> out;
    for (MxFormat w : wf)
      for (MxFormat a : af) out[{int(w), int(a)}].assign(names.size(), 0.0);
    if (fixed) *fixed = 0;
    std::vector<int> seen(names.size(), 0);
    for (size_t p = 0; p < workloads.size(); ++p) {
      for (const sim::CostRow& r : sim::cost_workload(workloads[p], arch, to, cache.get())) {
        const double v = weights[p] * metric_value(r.cost, metric);
        if (!r.op.assignable()) {
          if (fixed) *fixed += v;
          continue;
        }
        auto it = index.find(r.op.module);
        if (it == index.end())
          throw std::runtime_error("simulator workload has a Linear the model lacks: " +
                                   r.op.module);
        out[{int(r.wfmt), int(r.afmt)}][it->second] += v;
        if (r.wfmt == wf.front() && r.afmt == af.front()) ++seen[it->second];
      }
    }
    for (size_t i = 0; i < names.size(); ++i)
      if (seen[i] != int(workloads.size()))
        throw std::runtime_error("simulator workload lacks the model's Linear " + names[i]);
    return out;
  }
};
}  // namespace

std::vector<std::pair<sim::Phase, double>> SimCostOptions::phases() const {
  if (phase != "prefill" && phase != "decode" && phase != "both")
    throw std::invalid_argument("phase '" + phase + "' is not prefill, decode or both");
  if (tokens < 1) throw std::invalid_argument("prefill tokens must be >= 1");
  if (generate < 1) throw std::invalid_argument("generated tokens must be >= 1");
  if (context < 0) throw std::invalid_argument("context must be >= 0");
  if (batch < 1) throw std::invalid_argument("batch must be >= 1");
  std::vector<std::pair<sim::Phase, double>> out;
  if (phase != "decode") out.push_back({{sim::PhaseKind::Prefill, tokens, 0, batch}, 1.0});
  if (phase != "prefill") {
    const int64_t L = context > 0 ? context : phase == "both" ? tokens + generate / 2 : tokens;
    out.push_back(
        {{sim::PhaseKind::Decode, 0, L, batch}, phase == "both" ? double(generate) : 1.0});
  }
  return out;
}

CostModel sim_cost_model(const CausalLM& model, const sim::ArchConfig& arch,
                         const SimCostOptions& opt, const Ladder& ladder) {
  // The simulator reads the model's config.json with its own parser (one workload builder for
  // dmx-sim and the search); the runtime's config is written back as that file's text.
  const sim::ModelShape shape =
      sim::parse_model_json(config_to_json(model.config()), "the model's config.json");
  auto sc = std::make_shared<SimCosts>();
  sc->arch = arch;
  sc->metric = opt.metric;
  sc->names = model.linear_names();
  for (const auto& [ph, w] : opt.phases()) {
    sc->workloads.push_back(sim::decoder_workload(shape, ph, opt.fixed));
    sc->weights.push_back(w);
  }
  CostModel cm;
  cm.kind = "sim";
  cm.unit = opt.metric == SimMetric::Cycles   ? "cycles"
            : opt.metric == SimMetric::Energy ? "pJ"
                                              : "bytes";
  cm.ladder = ladder;
  const auto table = sc->layers(ladder.formats, ladder.formats, &cm.fixed);
  const size_t K = ladder.formats.size();
  for (size_t l = 0; l < sc->names.size(); ++l) {
    std::vector<std::vector<double>> t(K, std::vector<double>(K));
    for (size_t i = 0; i < K; ++i)
      for (size_t j = 0; j < K; ++j)
        t[i][j] = table.at({int(ladder.formats[i]), int(ladder.formats[j])})[l];
    cm.cost.push_back(t);
  }
  cm.pair_costs = [sc](MxFormat w, MxFormat a) {
    return sc->layers({w}, {a}, nullptr).at({int(w), int(a)});
  };
  return cm;
}

namespace {

// A budget below the cheapest assignment (every Linear at the lowest rung) cannot be met: the
// search would return that assignment and a cost above the budget. Above the dearest one it is
// met by every assignment, which is a legitimate (if idle) request.
double reachable_budget(double b, const std::string& text, const CostModel& cm) {
  const double lo = cm.total_low(), hi = cm.total_high();
  if (b < lo * (1 - 1e-12)) {
    char buf[256];
    std::snprintf(buf, sizeof buf,
                  "budget '%s' is below the cheapest assignment (every Linear at %s: %.6g %s); "
                  "reachable: %.6g .. %.6g %s",
                  text.c_str(), format_name(cm.ladder.formats.front()), lo, cm.unit.c_str(), lo, hi,
                  cm.unit.c_str());
    throw std::invalid_argument(buf);
  }
  return b;
}

}  // namespace

double parse_budget(const std::string& text, const CostModel& cm) {
  size_t pos = 0;
  double v = 0;
  try {
    v = std::stod(text, &pos);
  } catch (...) {
    throw std::invalid_argument("budget '" + text + "' is not a number");
  }
  std::string unit = text.substr(pos);
  while (!unit.empty() && unit.front() == ' ') unit.erase(unit.begin());
  if (!std::isfinite(v) || v < 0) throw std::invalid_argument("budget '" + text + "' is negative");
  if (unit.empty()) {
    if (cm.kind == "bits") return reachable_budget(v, text, cm);
    if (v > 1.0)
      throw std::invalid_argument("budget '" + text +
                                  "' is a fraction of the MXFP4..MXFP8 cost range: give 0..1 or "
                                  "a value with a unit");
    return cm.total_low() + v * (cm.total_high() - cm.total_low());
  }
  static const std::map<std::string, std::pair<std::string, double>> units = {
      {"bits", {"bits", 1}},
      {"bit", {"bits", 1}},
      {"cycles", {"cycles", 1}},
      {"kcycles", {"cycles", 1e3}},
      {"Mcycles", {"cycles", 1e6}},
      {"Gcycles", {"cycles", 1e9}},
      {"pJ", {"pJ", 1}},
      {"nJ", {"pJ", 1e3}},
      {"uJ", {"pJ", 1e6}},
      {"mJ", {"pJ", 1e9}},
      {"J", {"pJ", 1e12}},
      {"B", {"bytes", 1}},
      {"KB", {"bytes", 1e3}},
      {"MB", {"bytes", 1e6}},
      {"GB", {"bytes", 1e9}},
      {"KiB", {"bytes", 1024.0}},
      {"MiB", {"bytes", 1048576.0}},
      {"GiB", {"bytes", 1073741824.0}}};
  auto it = units.find(unit);
  if (it == units.end()) throw std::invalid_argument("budget '" + text + "': unknown unit " + unit);
  if (it->second.first != cm.unit)
    throw std::invalid_argument("budget '" + text + "' is in " + it->second.first +
                                " but the cost model measures " + cm.unit);
  return reachable_budget(v * it->second.second, text, cm);
}

// ---- Assignments -------------------------------------------------------------------------------
Assignment make_assignment(const CausalLM& model, const CostModel& cm,
                           const std::vector<int>& wrung, const std::vector<int>& arung) {
  Assignment a;
  const auto& names = model.linear_names();
  const std::vector<int64_t> params = linear_param_counts(model);
  const double psum = std::accumulate(params.begin(), params.end(), 0.0);
  for (size_t l = 0; l < names.size(); ++l) {
    LayerAssignment la;
    la.name = names[l];
    la.wrung = wrung[l];
    la.arung = arung[l];
    la.wfmt = cm.ladder.formats[wrung[l]];
    la.afmt = cm.ladder.formats[arung[l]];
    la.cost = cm.cost[l][wrung[l]][arung[l]];
    const double bits = 0.5 * (format_bits(la.wfmt) + format_bits(la.afmt));
    a.avg_bits += bits / names.size();
    a.avg_bits_weighted += bits * params[l] / psum;
    a.total_cost += la.cost;
    a.layers.push_back(la);
  }
  a.total_cost += cm.fixed;
  return a;
}

Assignment uniform_assignment(const CausalLM& model, const CostModel& cm, MxFormat wfmt,
                              MxFormat afmt) {
  const auto& names = model.linear_names();
  const std::vector<double> costs = cm.pair_costs(wfmt, afmt);
  auto rung_of = [&](MxFormat f) {
    for (size_t k = 0; k < cm.ladder.formats.size(); ++k)
      if (cm.ladder.formats[k] == f) return int(k);
    return -1;
  };
  Assignment a;
  const double bits = 0.5 * (format_bits(wfmt) + format_bits(afmt));
  a.avg_bits = a.avg_bits_weighted = bits;
  for (size_t l = 0; l < names.size(); ++l) {
    a.layers.push_back({names[l], wfmt, afmt, rung_of(wfmt), rung_of(afmt), costs[l]});
    a.total_cost += costs[l];
  }
  a.total_cost += cm.fixed;
  return a;
}

void apply_assignment(CausalLM& model, const Assignment& a) {
  std::vector<MxLinearPtr> lins = wrap_decoder_linears(model);
  for (size_t l = 0; l < lins.size(); ++l) lins[l]->set_fixed(a.layers[l].wfmt, a.layers[l].afmt);
}

at::Tensor make_windows(const std::vector<int32_t>& tokens, int64_t seqlen, int64_t max_windows) {
  int64_t n = static_cast<int64_t>(tokens.size()) / seqlen;
  if (max_windows > 0) n = std::min(n, max_windows);
  if (n == 0)
    throw std::invalid_argument("the calibration text has " + std::to_string(tokens.size()) +
                                " tokens, fewer than one window of " + std::to_string(seqlen));
  at::Tensor w = at::empty({n, seqlen}, at::kLong);
  int64_t* p = w.data_ptr<int64_t>();
  for (int64_t i = 0; i < n * seqlen; ++i) p[i] = tokens[i];
  return w;
}

// ---- dMX ---------------------------------------------------------------------------------------
double temperature_at(const DmxOptions& o, int step) {
  const double hold_steps = o.hold * o.steps;
  double T = o.t_start;
  if (step >= hold_steps && o.steps > hold_steps) {
    const double f = (step - hold_steps) / std::max(1.0, o.steps - hold_steps - 1.0);
    T = o.t_start * std::pow(o.t_end / o.t_start, std::min(1.0, f));
  }
  return o.t_scale * T;
}

namespace {
// Piecewise-linear ("hat") weights of offset b over the ladder's rungs: [K], differentiable.
at::Tensor rung_weights(const at::Tensor& b, const Ladder& ladder) {
  const auto& p = ladder.position;
  const size_t K = p.size();
  std::vector<at::Tensor> w;
  for (size_t k = 0; k < K; ++k) {
    at::Tensor up = k > 0 ? (b - p[k - 1]) / double(p[k] - p[k - 1]) : at::ones_like(b);
    at::Tensor down = k + 1 < K ? (p[k + 1] - b) / double(p[k + 1] - p[k]) : at::ones_like(b);
    w.push_back(at::clamp(at::minimum(up, down), 0.0, 1.0));
  }
  return at::stack(w);
}

uint32_t f32_bits(float x) { return dmx::fp32_bits(x); }
float f32_from(uint32_t u) { return dmx::fp32_from_bits(u); }

std::string search_fingerprint(const CausalLM& model, const at::Tensor& windows,
                               const CostModel& cm, double budget, const DmxOptions& o) {
  nlohmann::json j;
  j["steps"] = o.steps;
  j["lr"] = o.lr;
  j["momentum"] = o.momentum;
  j["lambda"] = o.lambda;
  j["t"] = {o.t_start, o.t_end, o.hold, o.t_scale};
  j["space"] = space_name(o.offsets.space);
  j["rungs"] = o.offsets.rungs;
  j["untied"] = o.offsets.untied;
  j["batch"] = o.batch;
  if (o.loss != "ce") j["loss"] = o.loss;
  j["seed"] = o.seed;
  j["budget"] = budget;
  if (o.theta_max > 0) j["theta_max"] = o.theta_max;
  j["cost"] = {cm.kind, cm.unit, cm.total_low(), cm.total_high()};
  j["layers"] = model.linear_names().size();
  if (model.rotation_seed()) j["rotation"] = *model.rotation_seed();
  j["windows"] = {windows.size(0), windows.size(1), windows.sum().item<int64_t>()};
  return j.dump();
}

}  // namespace

at::Tensor soft_total_cost(const std::vector<MxLinearPtr>& lins, const CostModel& cm) {
  const size_t L = lins.size();
  if (cm.cost.size() != L) throw std::invalid_argument("cost model and model differ in layers");
  const int64_t K = static_cast<int64_t>(cm.ladder.formats.size());
  at::Tensor table = at::empty({int64_t(L), K, K}, at::kDouble);
  double* t = table.data_ptr<double>();
  for (size_t l = 0; l < L; ++l)
    for (int64_t i = 0; i < K; ++i)
      for (int64_t j = 0; j < K; ++j) t[(l * K + i) * K + j] = cm.cost[l][i][j];
  std::vector<at::Tensor> ww, wa;
  for (const auto& l : lins) {
    ww.push_back(rung_weights(l->offset_weight(), cm.ladder));
    wa.push_back(rung_weights(l->offset_act(), cm.ladder));
  }
  return cm.fixed + at::einsum("li,lij,lj->", {at::stack(ww).to(at::kDouble), table,
                                               at::stack(wa).to(at::kDouble)});
}

at::Tensor soft_bits_equivalent(const at::Tensor& soft_total, const CostModel& cm) {
  if (cm.kind == "bits") return soft_total;
  const double lo = cm.total_low(), hi = cm.total_high();
  const double blo = format_bits(cm.ladder.formats.front());
  const double bhi = format_bits(cm.ladder.formats.back());
  return blo + (bhi - blo) * (soft_total - lo) / std::max(hi - lo, 1e-300);
}

at::Tensor hinge_regularizer(const at::Tensor& soft_bits, double target_bits, double lambda) {
  return lambda * at::relu(soft_bits - target_bits);
}

DmxResult dmx_search(CausalLM& model, const at::Tensor& calib_windows, const CostModel& cm,
                     double budget, const DmxOptions& opt) {
  const auto t0 = std::chrono::steady_clock::now();
  if (opt.steps < 1) throw std::invalid_argument("steps must be at least 1");
  if (opt.batch < 1) throw std::invalid_argument("batch must be at least 1");
  const Ladder& ladder = cm.ladder;
  if (ladder.space != opt.offsets.space || int(ladder.formats.size()) != opt.offsets.rungs)
    throw std::invalid_argument("the cost model's ladder does not match the offsets' space/rungs");
  if (opt.loss != "ce" && opt.loss != "kd")
    throw std::invalid_argument("loss '" + opt.loss + "' is not ce or kd");
  dist::Group* const group = opt.group;
  const int world = group ? group->size() : 1, rank = group ? group->rank() : 0;
  if (opt.batch % world != 0)
    throw std::invalid_argument("the global batch " + std::to_string(opt.batch) +
                                " is not a multiple of the world size " + std::to_string(world));
  const int64_t micro = opt.micro_batch > 0 ? opt.micro_batch : opt.batch / world;
  if (micro < 1 || (opt.batch / world) % micro != 0)
    throw std::invalid_argument("the micro-batch " + std::to_string(micro) +
                                " does not divide each rank's share of the batch (" +
                                std::to_string(opt.batch / world) + " windows)");
  const int64_t chunks = opt.batch / micro, local_chunks = chunks / world,
                local_chunk0 = rank * local_chunks;
  model.set_requires_grad(false);
  std::vector<MxLinearPtr> lins = wrap_decoder_linears(model);
  const size_t L = lins.size();
  // KD: log-probabilities of the unquantized model on every calibration window, computed once.
  at::Tensor teacher;
  if (opt.loss == "kd") {
    const int64_t n = calib_windows.size(0), T = calib_windows.size(1);
    const double bytes = 4.0 * n * T * model.config().vocab_size;
    if (bytes > 4.0 * (1ull << 30))
      throw std::invalid_argument(
          "the kd loss keeps the FP32 model's log-probabilities of every calibration window (" +
          std::to_string(int64_t(bytes / (1 << 20))) + " MiB): use fewer --calib-windows");
    at::NoGradGuard ng;
    for (auto& l : lins) l->set_fixed(std::nullopt, std::nullopt);
    std::vector<at::Tensor> parts;
    for (int64_t i = 0; i < n; i += 8)
      parts.push_back(
          at::log_softmax(model.forward(calib_windows.slice(0, i, std::min(n, i + 8))), -1));
    teacher = at::cat(parts);
  }
  for (auto& l : lins) {
    l->set_learned(opt.offsets);
    l->set_hard(false);
  }
  std::vector<at::Tensor> params;
  for (auto& l : lins) {
    params.push_back(l->theta_weight());
    if (opt.offsets.untied) params.push_back(l->theta_act());
  }
  std::vector<at::Tensor> momentum(params.size());
  for (auto& m : momentum) m = at::zeros({}, at::kFloat);

  const double target_bits = cm.to_bits_equivalent(budget);

  // Window order: a seeded permutation, cycled.
  const int64_t nwin = calib_windows.size(0);
  std::vector<int64_t> order(nwin);
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(opt.seed);
  std::shuffle(order.begin(), order.end(), rng);

  DmxResult res;
  int start = 0;
  const std::string fp = search_fingerprint(model, calib_windows, cm, budget, opt);
  // Rank 0 reads the checkpoint and sends it ("1" + text, or "0": none) to the other ranks.
  std::string ck_msg = "0";
  if (rank == 0 && !opt.checkpoint.empty() && std::filesystem::exists(opt.checkpoint)) {
    try {
      ck_msg = "1" + read_regular_file(opt.checkpoint, "search checkpoint", 64 << 20);
    } catch (const InputFileError& e) {
      throw std::runtime_error(e.what());
    }
  }
  if (group) group->broadcast(ck_msg);
  if (ck_msg[0] == '1') {
    const std::string text = ck_msg.substr(1);
    const SearchCheckpoint ck =
        parse_search_checkpoint(text, opt.checkpoint, fp, params.size(), opt.steps);
    start = ck.step;
    at::NoGradGuard ng;
    for (size_t i = 0; i < params.size(); ++i) {
      params[i].fill_(f32_from(ck.theta[i]));
      momentum[i].fill_(f32_from(ck.momentum[i]));
    }
    res.resumed = true;
  }
  auto save = [&](int step) {
    if (opt.checkpoint.empty() || rank != 0) return;
    SearchCheckpoint ck;
    ck.fingerprint = fp;
    ck.step = step;
    for (size_t i = 0; i < params.size(); ++i) {
      ck.theta.push_back(f32_bits(params[i].item<float>()));
      ck.momentum.push_back(f32_bits(momentum[i].item<float>()));
    }
    write_file_atomic(opt.checkpoint, search_checkpoint_json(ck));
  };

  int ran = 0;
  if (group) group->barrier();  // steps/s counts from a common start (loading times differ)
  auto tl = std::chrono::steady_clock::now();
  for (int step = start; step < opt.steps; ++step) {
    const double tp = temperature_at(opt, step);
    for (auto& l : lins) l->set_temperature(tp);
    // The step's global batch is the one a single process takes, cut into micro-batches of
    // `micro` windows (chunk k: windows [k * micro, (k + 1) * micro) of the batch); this rank
    // runs its contiguous block of chunks, one forward/backward pass each.
    at::Tensor soft_total, soft_bits, reg, loss, ce;
    std::vector<at::Tensor> grads;
    double ce_step = 0, loss_step = 0;
    // One row per chunk: the gradient of (chunk's mean task loss + regularizer) and the chunk's
    // task loss; the rows of other ranks' chunks stay 0 until the all-reduce (adding 0 is exact).
    const size_t P = params.size();
    std::vector<double> rows(static_cast<size_t>(chunks) * (P + 1), 0.0);
    for (int64_t k = local_chunk0; k < local_chunk0 + local_chunks; ++k) {
      std::vector<int64_t> idx;
      for (int64_t i = k * micro; i < (k + 1) * micro; ++i)
        idx.push_back(order[(step * opt.batch + i) % nwin]);
      const at::Tensor sel = at::tensor(idx, at::kLong);
      at::Tensor ids = calib_windows.index_select(0, sel);
      if (opt.loss == "kd") {
        const at::Tensor lt = teacher.index_select(0, sel);
        ce = (lt.exp() * (lt - at::log_softmax(model.forward(ids), -1))).sum(-1).mean();
      } else {
        ce = model.next_token_loss(ids);
      }
      soft_total = soft_total_cost(lins, cm);
      soft_bits = soft_bits_equivalent(soft_total, cm);
      reg = hinge_regularizer(soft_bits, target_bits, opt.lambda);
      loss = ce + reg.to(at::kFloat);
      for (auto& p : params)
        if (p.grad().defined()) p.mutable_grad().zero_();
      loss.backward();
      if (chunks == 1) {  // one pass over the whole batch: its gradients as they are
        for (auto& p : params) grads.push_back(p.grad().defined() ? p.grad() : at::zeros_like(p));
        ce_step = ce.item<double>();
        loss_step = loss.item<double>();
        break;
      }
      double* row = &rows[static_cast<size_t>(k) * (P + 1)];
      for (size_t i = 0; i < P; ++i)
        row[i] = params[i].grad().defined() ? params[i].grad().item<float>() : 0.0;
      row[P] = ce.item<double>();
    }
    if (chunks > 1) {
      if (world > 1) group->allreduce_sum(rows);
      // The mean over the chunks, added in chunk order in FP64 on every rank: the same numbers
      // in the same order whatever the world size, so N ranks equal one process bit for bit
      // (each chunk's regularizer gradient is the same, the mean keeps it once).
      std::vector<double> acc(P + 1, 0.0);
      for (int64_t k = 0; k < chunks; ++k)
        for (size_t i = 0; i <= P; ++i) acc[i] += rows[static_cast<size_t>(k) * (P + 1) + i];
      for (size_t i = 0; i < P; ++i)
        grads.push_back(at::full({}, static_cast<float>(acc[i] / chunks), at::kFloat));
      ce_step = acc[P] / chunks;
      loss_step = static_cast<float>(ce_step) + reg.to(at::kFloat).item<float>();
    }
    if (res.ce_curve.empty()) res.first_step = step;
    res.ce_curve.push_back(ce_step);
    res.loss_curve.push_back(loss_step);
    {
      at::NoGradGuard ng;
      for (size_t i = 0; i < params.size(); ++i) {
        const at::Tensor& g = grads[i];
        momentum[i].mul_(opt.momentum).add_(g);
        params[i].sub_(opt.lr * (g + opt.momentum * momentum[i]));
        // Projection onto theta >= 0 (so b_raw = |theta| = theta): with theta initialised at 0,
        // a subgradient across 0 lets Nesterov momentum (0.99) swing theta from side to side and
        // inflate |theta| (every layer ended at 8 bits under a 4-bit budget); torch's abs, with
        // gradient 0 at 0, would never move theta at all.
        if (params[i].item<float>() < 0.0f) {
          params[i].zero_();
          momentum[i].zero_();
        }
        if (opt.theta_max > 0 && params[i].item<float>() > opt.theta_max) {
          params[i].fill_(opt.theta_max);
          momentum[i].zero_();
        }
      }
    }
    ++ran;
    const bool last = step + 1 == opt.steps;
    const bool stop = opt.stop_after > 0 && ran >= opt.stop_after && !last;
    if ((step + 1) % std::max(1, opt.checkpoint_every) == 0 || last || stop) save(step + 1);
    if (opt.progress) {
      SearchProgress p;
      p.step = step + 1;
      p.steps = opt.steps;
      p.ce = ce_step;
      p.loss = loss_step;
      p.soft_bits = soft_bits.item<double>();
      p.soft_fraction = cm.fraction(soft_total.item<double>());
      p.t_prime = tp;
      p.steps_per_s =
          ran / std::chrono::duration<double>(std::chrono::steady_clock::now() - tl).count();
      p.resumed = res.resumed;
      opt.progress(p);
    }
    if (stop) {
      res.stopped = true;
      break;
    }
  }
  res.steps_done = start + ran;
  const double run_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - tl).count();
  res.steps_per_s = ran > 0 ? ran / run_s : 0.0;

  if (group) {
    // Every rank applied the same averaged gradients; check that the offsets are bit-equal to
    // rank 0's before each rank discretizes its own copy.
    std::string mine;
    for (auto& p : params) {
      const uint32_t u = f32_bits(p.item<float>());
      mine.append(reinterpret_cast<const char*>(&u), sizeof u);
    }
    std::string root = mine;
    group->broadcast(root);
    if (root != mine)
      throw std::runtime_error(group->who() + ": the offsets differ from rank 0's after step " +
                               std::to_string(start + ran));
  }
  std::vector<int> wr(L), ar(L);
  for (size_t l = 0; l < L; ++l) {
    const double tw = lins[l]->theta_weight().item<double>();
    const double ta = lins[l]->theta_act().item<double>();
    res.theta_w.push_back(tw);
    res.theta_a.push_back(ta);
    const int bw = hard_offset(tw, opt.offsets.rungs), ba = hard_offset(ta, opt.offsets.rungs);
    wr[l] = int(std::find(ladder.position.begin(), ladder.position.end(), bw) -
                ladder.position.begin());
    ar[l] = int(std::find(ladder.position.begin(), ladder.position.end(), ba) -
                ladder.position.begin());
  }
  res.threshold_assignment = make_assignment(model, cm, wr, ar);
  if (opt.budget_projection) {
    std::vector<double> bw, ba;
    for (size_t l = 0; l < L; ++l) {
      bw.push_back(std::fabs(res.theta_w[l]));
      ba.push_back(std::fabs(opt.offsets.untied ? res.theta_a[l] : res.theta_w[l]));
    }
    res.projection_moves =
        project_to_budget(cm, bw, ba, !opt.offsets.untied, budget, opt.budget_tolerance, wr, ar);
  }
  res.assignment = make_assignment(model, cm, wr, ar);
  apply_assignment(model, res.assignment);  // exact discrete formats from here on
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return res;
}

int project_to_budget(const CostModel& cm, const std::vector<double>& b_w,
                      const std::vector<double>& b_a, bool tied, double budget, double tolerance,
                      std::vector<int>& wrung, std::vector<int>& arung) {
  const size_t L = wrung.size();
  if (arung.size() != L || b_w.size() != L || b_a.size() != L || cm.cost.size() != L)
    throw std::invalid_argument("project_to_budget: layer counts differ");
  const std::vector<int>& pos = cm.ladder.position;
  const int top = static_cast<int>(pos.size()) - 1;
  const double tol = tolerance * std::fabs(cm.total_high() - cm.total_low());
  // Threshold between rungs k and k + 1 of the offset b (hard_offset's boundaries).
  auto boundary = [&](int k) { return 0.5 * (pos[k] + pos[k + 1]); };
  double total = cm.total(wrung, arung);
  int moves = 0;
  while (std::fabs(total - budget) > tol) {
    const int dir = total > budget ? -1 : +1;
    double best_margin = INFINITY, best_total = total;
    size_t best_l = L;
    int best_which = 0;  // 0: tied, 1: weight, 2: activation
    for (size_t l = 0; l < L; ++l) {
      for (int which = tied ? 0 : 1; which <= (tied ? 0 : 2); ++which) {
        const int rw = wrung[l] + (which != 2 ? dir : 0);
        const int ra = arung[l] + (which != 1 ? dir : 0);
        if (rw < 0 || rw > top || ra < 0 || ra > top) continue;
        const double b = which == 2 ? b_a[l] : b_w[l];
        const int from = which == 2 ? arung[l] : wrung[l];
        const double margin = dir > 0 ? boundary(from) - b : b - boundary(from - 1);
        const double t = total - cm.cost[l][wrung[l]][arung[l]] + cm.cost[l][rw][ra];
        // Strictly closer (a tie, up to rounding, is no progress and could oscillate).
        if (std::fabs(t - budget) >= std::fabs(total - budget) - 1e-9 * tol) continue;
        if (margin < best_margin) {
          best_margin = margin;
          best_total = t;
          best_l = l;
          best_which = which;
        }
      }
    }
    if (best_l == L) break;  // no single move brings the total closer
    if (best_which != 2) wrung[best_l] += dir;
    if (best_which != 1) arung[best_l] += dir;
    total = best_total;
    ++moves;
  }
  return moves;
}

// ---- KL baseline -------------------------------------------------------------------------------
std::vector<double> kl_sensitivity(CausalLM& model, const at::Tensor& windows, MxFormat low) {
  at::NoGradGuard ng;
  std::vector<MxLinearPtr> lins = wrap_decoder_linears(model);
  for (auto& l : lins) l->set_fixed(std::nullopt, std::nullopt);
  const at::Tensor ref = at::log_softmax(model.forward(windows), -1);
  const at::Tensor pref = ref.exp();
  std::vector<double> out;
  for (auto& l : lins) {
    l->set_fixed(low, low);
    const at::Tensor lq = at::log_softmax(model.forward(windows), -1);
    out.push_back((pref * (ref - lq)).sum(-1).mean().item<double>());
    l->set_fixed(std::nullopt, std::nullopt);
  }
  return out;
}

Assignment kl_assignment(const CausalLM& model, const CostModel& cm,
                         const std::vector<double>& sensitivity, double budget) {
  const size_t L = sensitivity.size();
  const int top = static_cast<int>(cm.ladder.formats.size()) - 1;
  std::vector<size_t> order(L);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return sensitivity[a] > sensitivity[b]; });
  std::vector<int> wr(L, 0), ar(L, 0);
  double total = cm.total(wr, ar);
  const double tol = 1e-9 * std::max(1.0, std::fabs(budget));
  for (size_t l : order) {
    const double next = total - cm.cost[l][0][0] + cm.cost[l][top][top];
    if (next <= budget + tol) {
      wr[l] = ar[l] = top;
      total = next;
    }
  }
  return make_assignment(model, cm, wr, ar);
}

}  // namespace dmx::quant
