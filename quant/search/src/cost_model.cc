// The cost side of dMX: format ladders, the bits and simulator cost models, budgets and what
// budget a cost model can reach.
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

#include "dmx/quant/search.h"

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

}  // namespace dmx::quant
