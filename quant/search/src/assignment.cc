// Discrete assignments (per-layer formats from rungs, uniform, applied to a model), calibration
// windows, and the KL-sensitivity baseline.
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

at::Tensor make_windows(const std::vector<int32_t>& tokens, int64_t seqlen, int64_t max_windows,
                        uint64_t seed) {
  const int64_t total = static_cast<int64_t>(tokens.size()) / seqlen;
  const int64_t n = max_windows > 0 ? std::min(total, max_windows) : total;
  if (n == 0)
    throw std::invalid_argument("the calibration text has " + std::to_string(tokens.size()) +
                                " tokens, fewer than one window of " + std::to_string(seqlen));
  // Window indices: the first n, or a seeded draw without replacement (a partial Fisher-Yates
  // shuffle with mt19937_64, whose output the standard fixes, so every platform draws the same).
  std::vector<int64_t> index(total);
  std::iota(index.begin(), index.end(), 0);
  if (seed != 0) {
    std::mt19937_64 rng(seed);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t j = i + static_cast<int64_t>(rng() % static_cast<uint64_t>(total - i));
      std::swap(index[i], index[j]);
    }
  }
  at::Tensor w = at::empty({n, seqlen}, at::kLong);
  int64_t* p = w.data_ptr<int64_t>();
  for (int64_t r = 0; r < n; ++r)
    for (int64_t t = 0; t < seqlen; ++t) p[r * seqlen + t] = tokens[index[r] * seqlen + t];
  return w;
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
