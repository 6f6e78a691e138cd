// The dMX search itself: annealed learnable format offsets trained against the task loss plus the
// budget hinge (data parallel over a dmx::dist group), checkpoints, the hard threshold and the
// projection onto the budget.
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

}  // namespace dmx::quant
