// quant/search: cost models and budgets, the KL ranking, resume and determinism of the dMX
// search, the budget projection, and the dmx-search CLI's errors and sweeps.
#include "search_test_util.h"

using namespace search_test;

TEST(CostModel, BitsModelAndSoftCostInterpolation) {
  CausalLM m = CausalLM::random(tiny_config(), 1);
  const CostModel cm = bits_cost_model(m, make_ladder(FormatSpace::EM, 2), false);
  EXPECT_DOUBLE_EQ(cm.total_low(), 4.0);
  EXPECT_DOUBLE_EQ(cm.total_high(), 8.0);
  // Budgets: below the all-MXFP4 assignment none can be met (refused, naming the range); at or
  // above it they are taken as given.
  EXPECT_DOUBLE_EQ(parse_budget("4", cm), 4.0);
  EXPECT_DOUBLE_EQ(parse_budget("5.5 bits", cm), 5.5);
  EXPECT_DOUBLE_EQ(parse_budget("9", cm), 9.0);
  try {
    parse_budget("2", cm);
    ADD_FAILURE() << "budget 2 bits accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("below the cheapest assignment (every Linear at E2M1: 4 "
                                         "bits); reachable: 4 .. 8 bits"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(parse_budget("3.99bits", cm), std::invalid_argument);
  const CostModel cw = bits_cost_model(m, make_ladder(FormatSpace::EM, 2), true);
  EXPECT_NEAR(cw.total_high(), 8.0, 1e-12);
  auto lins = wrap_decoder_linears(m);
  LearnedOffsets lo;
  for (auto& l : lins) l->set_learned(lo);
  // Soft offsets b: the soft average bits is mean(4 + 2b) over weights and activations.
  std::vector<double> bs;
  double want = 0;
  {
    at::NoGradGuard ng;
    for (size_t i = 0; i < lins.size(); ++i) {
      lins[i]->theta_weight().fill_(0.2 + 0.1 * i);
      lins[i]->set_temperature(4.0);
      want += (4 + 2 * lins[i]->offset_weight().item<double>()) / lins.size();
    }
  }
  const at::Tensor soft = soft_total_cost(lins, cm);
  EXPECT_NEAR(soft.item<double>(), want, 1e-6);
  // Hinge: zero gradient under the budget, lambda * d(bits)/d(theta) above it.
  at::Tensor r_under = hinge_regularizer(soft_bits_equivalent(soft, cm), want + 0.5, 5.0);
  EXPECT_EQ(r_under.item<double>(), 0.0);
  at::Tensor r_over = hinge_regularizer(soft_bits_equivalent(soft, cm), want - 0.5, 5.0);
  EXPECT_NEAR(r_over.item<double>(), 2.5, 1e-5);
  r_over.backward();
  for (auto& l : lins) EXPECT_GT(l->theta_weight().grad().item<double>(), 0.0);
}

TEST(CostModel, SimCostTableAndBudgets) {
  CausalLM m = CausalLM::random(tiny_config(), 1);
  const sim::ArchConfig arch = sim::load_arch(DMX_SIM_CONFIGS "/edge_npu.json");
  SimCostOptions opt;
  opt.phase = "prefill";
  opt.tokens = 64;
  const Ladder ladder = make_ladder(FormatSpace::EM, 2);
  const CostModel cm = sim_cost_model(m, arch, opt, ladder);
  ASSERT_EQ(cm.cost.size(), 14u);
  // Each entry is the simulator's own cost of that GEMM (q_proj: 64 tokens x 64 out x 64 in).
  EXPECT_EQ(cm.cost[0][0][1],
            double(sim::cost_gemm(arch, {64, 64, 64}, MxFormat::E2M1, MxFormat::E4M3).cycles));
  // The fixed part is every unassigned operation of the simulator's workload for this model.
  const sim::ModelShape shape = sim::parse_model_json(config_to_json(m.config()), "tiny");
  sim::TableOptions to;
  to.weight_formats = to.act_formats = {MxFormat::E2M1};
  double fixed = 0;
  for (const auto& r : sim::cost_workload(
           sim::decoder_workload(shape, {sim::PhaseKind::Prefill, 64, 0, 1}), arch, to))
    if (!r.op.assignable()) fixed += double(r.cost.cycles);
  EXPECT_GT(fixed, 0);
  EXPECT_DOUBLE_EQ(cm.fixed, fixed);
  EXPECT_DOUBLE_EQ(
      cm.total_low(), fixed + [&] {
        double t = 0;
        for (const auto& l : cm.cost) t += l[0][0];
        return t;
      }());
  // Both phases: the prefill plus `generate` decode steps costed at the mean context.
  SimCostOptions both = opt, dec = opt;
  both.phase = "both";
  both.generate = 32;
  dec.phase = "decode";
  dec.context = 64 + 16;
  const CostModel cb = sim_cost_model(m, arch, both, ladder);
  const CostModel cd = sim_cost_model(m, arch, dec, ladder);
  EXPECT_DOUBLE_EQ(cb.fixed, cm.fixed + 32 * cd.fixed);
  for (size_t l = 0; l < 14; ++l)
    for (int i = 0; i < 2; ++i)
      for (int j = 0; j < 2; ++j)
        EXPECT_DOUBLE_EQ(cb.cost[l][i][j], cm.cost[l][i][j] + 32 * cd.cost[l][i][j]);
  SimCostOptions bad = opt;
  bad.phase = "training";
  EXPECT_THROW(sim_cost_model(m, arch, bad, ladder), std::invalid_argument);
  EXPECT_LT(cm.total_low(), cm.total_high());
  EXPECT_DOUBLE_EQ(parse_budget("0.25", cm),
                   cm.total_low() + 0.25 * (cm.total_high() - cm.total_low()));
  const double mid = 0.5 * (cm.total_low() + cm.total_high());
  char mid_kcycles[64];
  std::snprintf(mid_kcycles, sizeof mid_kcycles, "%.17gkcycles", mid / 1e3);
  EXPECT_NEAR(parse_budget(mid_kcycles, cm), mid, 1e-9 * mid);
  ASSERT_GT(cm.total_low(), 2000.0);
  EXPECT_THROW(parse_budget("2kcycles", cm), std::invalid_argument);  // below every assignment
  EXPECT_THROW(parse_budget("3uJ", cm), std::invalid_argument);
  EXPECT_THROW(parse_budget("1.5", cm), std::invalid_argument);
  // Bilinear interpolation: at b = 1 on both operands, the mean of the four corners.
  auto lins = wrap_decoder_linears(m);
  for (auto& l : lins) {
    l->set_learned({});
    at::NoGradGuard ng;
    l->theta_weight().fill_(1.0);  // b = 2 sigmoid(0) = 1
  }
  double want = cm.fixed;  // the unassigned operations are part of every total
  for (const auto& t : cm.cost) want += (t[0][0] + t[0][1] + t[1][0] + t[1][1]) / 4;
  EXPECT_NEAR(soft_total_cost(lins, cm).item<double>(), want, 1e-6 * want);
  EXPECT_NEAR(soft_bits_equivalent(at::full({}, cm.total_high(), at::kDouble), cm).item<double>(),
              8.0, 1e-12);
}

// ---- KL baseline -------------------------------------------------------------------------------
namespace {
// An independent quantized Linear: golden row functions, not the LibTorch operator.
struct GoldenLinear : Linear {
  GoldenLinear(const Linear& b, MxFormat f) : Linear(b.name(), b.weight, b.bias), f(f) {}
  at::Tensor forward(const at::Tensor& x) override {
    const at::Tensor x2 = x.reshape({-1, x.size(-1)});
    return at::linear(golden_fake_quant(x2, f).view(x.sizes()), golden_fake_quant(weight, f), bias);
  }
  MxFormat f;
};
}  // namespace

TEST(KlBaseline, SensitivityRankingAndPromotion) {
  at::set_num_threads(1);
  CausalLM m = CausalLM::random(tiny_config(), 4, 0.08);
  const at::Tensor w = random_windows(9, 2, 32, 97);
  const std::vector<double> sens = kl_sensitivity(m, w, MxFormat::E2M1);
  ASSERT_EQ(sens.size(), 14u);
  // Recompute two layers' KL with golden-quantized Linears.
  CausalLM ref = CausalLM::random(tiny_config(), 4, 0.08);
  const at::Tensor lp = at::log_softmax(ref.forward(w), -1);
  for (size_t l : {size_t(0), size_t(13)}) {
    const std::string name = ref.linear_names()[l];
    LinearPtr orig = ref.linear(name);
    ref.set_linear(name, std::make_shared<GoldenLinear>(*orig, MxFormat::E2M1));
    const at::Tensor lq = at::log_softmax(ref.forward(w), -1);
    const double kl = (lp.exp() * (lp - lq)).sum(-1).mean().item<double>();
    ref.set_linear(name, orig);
    EXPECT_NEAR(sens[l], kl, 1e-6 + 1e-4 * kl) << name;
    EXPECT_GT(sens[l], 0.0);
  }
  // Budget 5 bits of 4..8 over 14 equal layers: the 3 most sensitive go to MXFP8
  // (4 + 3 * 4/14 = 4.86; a fourth would make 5.14).
  const CostModel cm = bits_cost_model(m, make_ladder(FormatSpace::EM, 2), false);
  const Assignment a = kl_assignment(m, cm, sens, 5.0);
  std::vector<size_t> order(14);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](size_t x, size_t y) { return sens[x] > sens[y]; });
  for (size_t r = 0; r < 14; ++r) {
    const bool high = r < 3;
    EXPECT_EQ(a.layers[order[r]].wfmt, high ? MxFormat::E4M3 : MxFormat::E2M1) << r;
    EXPECT_EQ(a.layers[order[r]].afmt, a.layers[order[r]].wfmt);
  }
  EXPECT_NEAR(a.avg_bits, 4.0 + 4.0 * 3 / 14, 1e-12);
  EXPECT_LE(a.avg_bits, 5.0);
}

// ---- dMX search: regularizer effect, resume, determinism ---------------------------------------
namespace {
DmxResult tiny_search(const std::string& ckpt, int stop_after, double budget, int rungs = 2,
                      bool untied = false, CausalLM* out_model = nullptr, double theta_max = 0) {
  at::set_num_threads(1);
  CausalLM m = CausalLM::random(tiny_config(), 4, 0.08);
  const at::Tensor w = random_windows(9, 4, 32, 97);
  const CostModel cm = bits_cost_model(m, make_ladder(FormatSpace::EM, rungs), false);
  DmxOptions o;
  o.steps = 12;
  o.seed = 3;
  o.offsets.rungs = rungs;
  o.offsets.untied = untied;
  o.checkpoint = ckpt;
  o.checkpoint_every = 4;
  o.stop_after = stop_after;
  o.theta_max = theta_max;
  DmxResult r = dmx_search(m, w, cm, budget, o);
  if (out_model) *out_model = std::move(m);
  return r;
}
fs::path temp_path(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("dmx_search_test_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d / name;
}
}  // namespace

TEST(DmxSearch, SameSeedSameResultAndResumeContinues) {
  const DmxResult a = tiny_search("", 0, 5.0);
  const DmxResult b = tiny_search("", 0, 5.0);
  ASSERT_EQ(a.theta_w.size(), 14u);
  for (size_t i = 0; i < a.theta_w.size(); ++i)
    EXPECT_EQ(bits_of(a.theta_w[i]), bits_of(b.theta_w[i]));
  // Killed after 5 steps (the checkpoint written at the stop), then resumed: the same thetas.
  const fs::path ck = temp_path("ckpt.json");
  fs::remove(ck);
  const DmxResult s1 = tiny_search(ck.string(), 5, 5.0);
  EXPECT_TRUE(s1.stopped);
  EXPECT_EQ(s1.steps_done, 5);
  const DmxResult s2 = tiny_search(ck.string(), 0, 5.0);
  EXPECT_TRUE(s2.resumed);
  EXPECT_EQ(s2.steps_done, 12);
  for (size_t i = 0; i < a.theta_w.size(); ++i)
    EXPECT_EQ(bits_of(a.theta_w[i]), bits_of(s2.theta_w[i])) << i;
  // A checkpoint of another search is refused, not silently mixed in.
  EXPECT_THROW(tiny_search(ck.string(), 0, 6.0), std::runtime_error);
  fs::remove_all(ck.parent_path());
}

TEST(DmxSearch, BudgetAtMxfp4GivesAllMxfp4AndDiscreteEval) {
  CausalLM m = CausalLM::random(tiny_config(), 0);
  const DmxResult r = tiny_search("", 0, 4.0, 2, false, &m);
  for (const auto& l : r.assignment.layers) {
    EXPECT_EQ(l.wfmt, MxFormat::E2M1) << l.name;
    EXPECT_EQ(l.afmt, MxFormat::E2M1) << l.name;
  }
  EXPECT_DOUBLE_EQ(r.assignment.avg_bits, 4.0);
  // The model is left with exactly the discrete formats: same logits as a fresh uniform model.
  CausalLM u = CausalLM::random(tiny_config(), 4, 0.08);
  apply_assignment(u, r.assignment);
  const at::Tensor w = random_windows(1, 1, 32, 97);
  at::NoGradGuard ng;
  EXPECT_TRUE(at::equal(m.forward(w), u.forward(w)));
}

TEST(DmxSearch, ThreeRungLadderAndUntiedOffsets) {
  const DmxResult r3 = tiny_search("", 0, 6.0, 3, false);
  for (const auto& l : r3.assignment.layers) EXPECT_EQ(l.wfmt, l.afmt);
  const DmxResult ru = tiny_search("", 0, 6.0, 2, true);
  ASSERT_EQ(ru.theta_a.size(), 14u);
  bool differ = false;
  for (size_t i = 0; i < 14; ++i) differ |= ru.theta_w[i] != ru.theta_a[i];
  EXPECT_TRUE(differ) << "untied offsets should train separately";
  for (size_t i = 0; i < 14; ++i) {
    EXPECT_EQ(ru.threshold_assignment.layers[i].wfmt,
              format_at(hard_offset(ru.theta_w[i], 2), FormatSpace::EM));
    EXPECT_EQ(ru.threshold_assignment.layers[i].afmt,
              format_at(hard_offset(ru.theta_a[i], 2), FormatSpace::EM));
  }
  // The projection lands on the budget: 6.0 bits is reachable exactly with 7 of 14 tied layers
  // (3 rungs: 1 bit steps of 1/14) and with untied operands.
  EXPECT_LE(std::fabs(r3.assignment.avg_bits - 6.0), 0.08 + 1e-12);
  EXPECT_LE(std::fabs(ru.assignment.avg_bits - 6.0), 0.08 + 1e-12);
}

TEST(DmxSearch, ThetaMaxBoundsTheOffsets) {
  // Unbounded, some theta of the 12-step search rise past 0.3; the box [0, 0.3] (applied to the
  // FP32 parameter) keeps every theta inside, so every layer ends at the lowest rung.
  const DmxResult free = tiny_search("", 0, 8.0);
  double top = 0;
  for (double t : free.theta_w) top = std::max(top, t);
  const DmxResult boxed = tiny_search("", 0, 8.0, 2, false, nullptr, 0.3);
  for (double t : boxed.theta_w) {
    EXPECT_GE(t, 0.0);
    EXPECT_LE(t, static_cast<double>(0.3f));
  }
  EXPECT_GT(top, 0.3) << "the unbounded search should move some theta past 0.3";
  EXPECT_DOUBLE_EQ(boxed.threshold_assignment.avg_bits, 4.0);
}

TEST(DmxSearch, KdLossIsTheKlDivergenceToTheUnquantizedModel) {
  // One step at lr 0 reports the loss of the initial soft formats (theta = 0, T' = 4); recompute
  // it by hand: the FP32 model's and the soft-quantized model's next-token distributions, KL per
  // token summed in double, averaged over the window's tokens.
  at::set_num_threads(1);
  const at::Tensor w = random_windows(9, 4, 32, 97);
  CausalLM m = CausalLM::random(tiny_config(), 4, 0.08);
  const CostModel cm = bits_cost_model(m, make_ladder(FormatSpace::EM, 2), false);
  DmxOptions o;
  o.steps = 1;
  o.lr = 0;
  o.seed = 3;
  o.loss = "kd";
  double reported = -1;
  o.progress = [&](const SearchProgress& p) { reported = p.ce; };
  dmx_search(m, w, cm, 8.0, o);
  // The window the seeded order takes first.
  std::vector<int64_t> order(4);
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(3);
  std::shuffle(order.begin(), order.end(), rng);
  const at::Tensor ids = w.slice(0, order[0], order[0] + 1);
  CausalLM fp = CausalLM::random(tiny_config(), 4, 0.08);
  CausalLM q = CausalLM::random(tiny_config(), 4, 0.08);
  std::vector<MxLinearPtr> lins = wrap_decoder_linears(q);
  for (auto& l : lins) {
    l->set_learned(LearnedOffsets{});
    l->set_temperature(temperature_at(o, 0));
  }
  at::Tensor lt, lq;
  {
    at::NoGradGuard ng;
    lt = at::log_softmax(fp.forward(ids), -1).to(at::kDouble).contiguous();
    lq = at::log_softmax(q.forward(ids), -1).to(at::kDouble).contiguous();
  }
  const double* pt = lt.data_ptr<double>();
  const double* pq = lq.data_ptr<double>();
  const int64_t tokens = ids.size(1), V = 97;
  double kl = 0;
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t v = 0; v < V; ++v) kl += std::exp(pt[t * V + v]) * (pt[t * V + v] - pq[t * V + v]);
  kl /= tokens;
  EXPECT_GT(kl, 1e-4) << "the soft 4-bit formats should move the distribution";
  EXPECT_NEAR(reported, kl, 1e-5 * kl + 1e-9);
  // The loss is part of the search's identity: a ce checkpoint is not resumed as kd.
  const fs::path ck = temp_path("kd_ckpt.json");
  fs::remove(ck);
  CausalLM a = CausalLM::random(tiny_config(), 4, 0.08);
  DmxOptions oc;
  oc.steps = 2;
  oc.checkpoint = ck.string();
  dmx_search(a, w, cm, 5.0, oc);
  CausalLM b = CausalLM::random(tiny_config(), 4, 0.08);
  oc.loss = "kd";
  EXPECT_THROW(dmx_search(b, w, cm, 5.0, oc), std::runtime_error);
  oc.loss = "mse";
  EXPECT_THROW(dmx_search(b, w, cm, 5.0, oc), std::invalid_argument);
  fs::remove_all(ck.parent_path());
}

// ---- Budget projection after the threshold ----------------------------------------------------
TEST(BudgetProjection, PromotesTheLayersClosestToTheThresholdFirst) {
  CausalLM m = CausalLM::random(tiny_config(), 1);
  const CostModel cm = bits_cost_model(m, make_ladder(FormatSpace::EM, 2), false);
  // 14 tied layers with b_raw 0.30 .. 0.95 (under the threshold 1), except layer 2 (8 bits).
  std::vector<double> b(14);
  for (size_t l = 0; l < 14; ++l) b[l] = 0.3 + 0.05 * double(l);  // 0.30 .. 0.95
  b[2] = 1.4;                                                     // one layer above: 8 bits
  std::vector<int> wr(14, 0), ar(14, 0);
  for (size_t l = 0; l < 14; ++l) wr[l] = ar[l] = hard_offset(b[l], 2) == 2 ? 1 : 0;
  ASSERT_NEAR(cm.total(wr, ar), 4.0 + 4.0 / 14, 1e-12);
  // Budget 4.95, tolerance 0.02 * 4 = 0.08 bits; one tied layer is 4/14 = 0.286 bits, so 4.95 is
  // out of reach: two promotions give 4.857 (|err| 0.093), a third 5.143 (|err| 0.193), so the
  // projection stops at the closest total.
  const int moves = project_to_budget(cm, b, b, true, 4.95, 0.02, wr, ar);
  EXPECT_EQ(moves, 2);
  // The two promoted are the two largest b under the threshold: layers 13 (0.95) and 12 (0.90).
  for (size_t l = 0; l < 14; ++l) {
    const bool high = l == 2 || l == 13 || l == 12;
    EXPECT_EQ(wr[l], high ? 1 : 0) << l;
    EXPECT_EQ(ar[l], wr[l]) << l;
  }
  EXPECT_NEAR(cm.total(wr, ar), 4.0 + 3 * 4.0 / 14, 1e-12);  // 4.857
}

TEST(BudgetProjection, DemotesUntiedOperandsAndStopsWhenNoMoveHelps) {
  CausalLM m = CausalLM::random(tiny_config(), 1);
  const CostModel cm = bits_cost_model(m, make_ladder(FormatSpace::EM, 2), false);
  std::vector<double> bw(14, 1.9), ba(14, 1.9);
  ba[5] = 1.05;  // the least confident decision: layer 5's activation
  std::vector<int> wr(14, 1), ar(14, 1);
  // 8 bits -> budget 7.8: one operand step is 4/28 = 0.143 bits; with a tight tolerance the
  // closest total is 7.857 (one move), a second move (7.714) would not get closer.
  const int moves = project_to_budget(cm, bw, ba, false, 7.8, 0.001, wr, ar);
  EXPECT_EQ(moves, 1);
  EXPECT_EQ(ar[5], 0);
  EXPECT_EQ(wr[5], 1);
  EXPECT_NEAR(cm.total(wr, ar), 8.0 - 4.0 / 28, 1e-12);
  // Already inside the tolerance: nothing moves.
  std::vector<int> w2(14, 0), a2(14, 0);
  EXPECT_EQ(project_to_budget(cm, bw, ba, true, 4.05, 0.02, w2, a2), 0);
}

TEST(BudgetProjection, SimCostModelLandsWithinTwoPercentOfTheRange) {
  CausalLM m = CausalLM::random(tiny_config(), 1);
  const sim::ArchConfig arch = sim::load_arch(DMX_SIM_CONFIGS "/edge_npu.json");
  SimCostOptions opt;
  opt.tokens = 64;
  const CostModel cm = sim_cost_model(m, arch, opt, make_ladder(FormatSpace::EM, 3));
  std::mt19937 rng(11);
  std::uniform_real_distribution<double> u(0.0, 2.0);
  for (double frac : {0.1, 0.3, 0.5, 0.7, 0.9}) {
    std::vector<double> b(14);
    for (auto& x : b) x = u(rng);
    std::vector<int> wr(14), ar(14);
    for (size_t l = 0; l < 14; ++l) {
      const int h = hard_offset(b[l], 3);
      wr[l] = ar[l] = h;  // EM 3-rung positions 0, 1, 2 are the rung indices
    }
    const double budget = cm.total_low() + frac * (cm.total_high() - cm.total_low());
    project_to_budget(cm, b, b, true, budget, 0.02, wr, ar);
    EXPECT_LE(std::fabs(cm.fraction(cm.total(wr, ar)) - frac), 0.02) << "fraction " << frac;
  }
}

TEST(CalibrationWindows, SeedZeroTakesTheFirstWindowsOtherSeedsDrawUniformly) {
  const int64_t seqlen = 8, total = 20;
  std::vector<int32_t> toks(total * seqlen + 5);  // a ragged tail that no window may use
  for (size_t i = 0; i < toks.size(); ++i) toks[i] = static_cast<int32_t>(i);
  // The window a row came from (rows are aligned, contiguous slices of the text).
  auto origin = [&](const at::Tensor& w, int64_t r) {
    const int64_t first = w[r][0].item<int64_t>();
    EXPECT_EQ(first % seqlen, 0);
    for (int64_t t = 0; t < seqlen; ++t) EXPECT_EQ(w[r][t].item<int64_t>(), first + t);
    return first / seqlen;
  };
  const at::Tensor w0 = make_windows(toks, seqlen, 5, 0);
  for (int64_t r = 0; r < 5; ++r) EXPECT_EQ(origin(w0, r), r);
  // Every window is drawn equally often over seeds, never twice in one draw, and a smaller
  // count with the same seed is a prefix of the larger draw.
  std::vector<int> hits(total, 0);
  const int seeds = 4000;
  for (uint64_t seed = 1; seed <= seeds; ++seed) {
    const at::Tensor w = make_windows(toks, seqlen, 5, seed);
    ASSERT_EQ(w.size(0), 5);
    std::set<int64_t> seen;
    for (int64_t r = 0; r < 5; ++r) {
      const int64_t k = origin(w, r);
      ASSERT_TRUE(k >= 0 && k < total) << "seed " << seed;
      EXPECT_TRUE(seen.insert(k).second) << "seed " << seed << " drew window " << k << " twice";
      ++hits[k];
    }
    if (seed <= 20) {
      EXPECT_TRUE(at::equal(make_windows(toks, seqlen, 2, seed), w.slice(0, 0, 2)));
    }
  }
  // Expected 4000 * 5 / 20 = 1000 per window; binomial sd ~27, so +-10% is over 3.5 sd.
  for (int64_t k = 0; k < total; ++k)
    EXPECT_NEAR(hits[k], 1000, 100) << "window " << k << " over " << seeds << " seeds";
  // All windows (count 0 or larger than the text holds): a permutation of the text's windows.
  const at::Tensor all = make_windows(toks, seqlen, 0, 7);
  ASSERT_EQ(all.size(0), total);
  std::set<int64_t> perm;
  for (int64_t r = 0; r < total; ++r) perm.insert(origin(all, r));
  EXPECT_EQ(perm.size(), size_t(total));
  EXPECT_FALSE(at::equal(make_windows(toks, seqlen, 5, 1), make_windows(toks, seqlen, 5, 2)));
  EXPECT_TRUE(at::equal(make_windows(toks, seqlen, 5, 9), make_windows(toks, seqlen, 5, 9)));
}

TEST(DmxSearchCli, UsageErrorsExitTwoAndNameTheInput) {
#ifndef DMX_SEARCH_BIN
  GTEST_SKIP() << "dmx-search was not built (CLI11 missing)";
#else
  const std::string bin = DMX_SEARCH_BIN;
  EXPECT_EQ(std::system((bin + " --help >/dev/null 2>&1").c_str()), 0);
  const fs::path log = temp_path("err.txt");
  const int rc = std::system((bin + " --model /nonexistent/model --data /nonexistent.txt --out " +
                              (log.parent_path() / "o").string() + " >" + log.string() + " 2>&1")
                                 .c_str());
  EXPECT_EQ(WEXITSTATUS(rc), 2);
  std::ifstream f(log);
  std::string text((std::istreambuf_iterator<char>(f)), {});
  EXPECT_NE(text.find("/nonexistent/model"), std::string::npos) << text;
  const int rc2 = std::system((bin + " --bogus-flag >/dev/null 2>&1").c_str());
  EXPECT_EQ(WEXITSTATUS(rc2), 2);
  // Refused before the model is loaded: a window that cannot fit in memory (the estimate is
  // named), and an --out whose parent directory does not exist; no output is written.
  const std::string model = std::string(DMX_REPO) + "/models/llama-tiny";
  const std::string data = std::string(DMX_REPO) + "/data/wiki.valid.raw";
  auto run = [&](const std::string& args) {
    const int r = std::system(
        (bin + " --model " + model + " --data " + data + " " + args + " >" + log.string() + " 2>&1")
            .c_str());
    std::ifstream in(log);
    return std::make_pair(WEXITSTATUS(r), std::string((std::istreambuf_iterator<char>(in)), {}));
  };
  const fs::path out = log.parent_path() / "never";
  auto [rc3, text3] = run("--seqlen 100000 --out " + out.string());
  EXPECT_EQ(rc3, 1) << text3;
  EXPECT_NE(text3.find("needs about"), std::string::npos) << text3;
  EXPECT_FALSE(fs::exists(out));
  auto [rc5, text5] =
      run("--method dmx --cost-model bits --budget 2 --steps 1 --out " + out.string());
  EXPECT_EQ(rc5, 2) << text5;
  EXPECT_NE(text5.find("--budget: budget '2' is below the cheapest assignment"), std::string::npos)
      << text5;
  auto [rc4, text4] = run("--out /nonexistent/dir/out");
  EXPECT_EQ(rc4, 2) << text4;
  EXPECT_NE(text4.find("parent directory does not exist"), std::string::npos) << text4;
  fs::remove_all(log.parent_path());
#endif
}

// A one-layer model over the shipped tokenizer's vocabulary, saved the way checkpoints are.
[[maybe_unused]] static void save_sweep_model(const fs::path& dir) {
  nlohmann::json j = {{"architectures", {"LlamaForCausalLM"}},
                      {"model_type", "llama"},
                      {"hidden_size", 64},
                      {"intermediate_size", 128},
                      {"num_hidden_layers", 1},
                      {"num_attention_heads", 4},
                      {"num_key_value_heads", 2},
                      {"vocab_size", 4096},
                      {"rms_norm_eps", 1e-5},
                      {"rope_theta", 10000.0},
                      {"tie_word_embeddings", true}};
  CausalLM::random(parse_config(j.dump(), "sweep"), 5, 0.05).save(dir.string());
}

TEST(DmxSearchCli, SweepWritesTheCsvAndReusesOnlyPointsOfTheSameSettings) {
#if !defined(DMX_SEARCH_BIN) || !defined(DMX_REPO)
  GTEST_SKIP() << "dmx-search was not built (CLI11 missing)";
#else
  const fs::path dir = temp_path("sweep");
  save_sweep_model(dir / "model");
  const std::string repo = DMX_REPO;
  auto sweep = [&](const std::string& kl_windows, const std::string& log) {
    const std::string cmd =
        std::string(DMX_SEARCH_BIN) + " sweep --model " + (dir / "model").string() +
        " --tokenizer " + repo + "/models/tokenizer.json --data " + repo +
        "/data/wiki.valid.raw --seqlen 32 --calib-windows 4 --eval-windows 4 --kl-windows " +
        kl_windows +
        " --steps 3 --lr 20 --loss kd --threads 1 --budgets 5 --methods dmx kl uniform --out " +
        (dir / "out").string() + " >" + (dir / log).string() + " 2>&1";
    return WEXITSTATUS(std::system(cmd.c_str()));
  };
  auto read = [](const fs::path& p) {
    std::ifstream f(p);
    return std::string((std::istreambuf_iterator<char>(f)), {});
  };
  ASSERT_EQ(sweep("2", "1.txt"), 0) << read(dir / "1.txt");
  const std::string csv = read(dir / "out" / "sweep.csv");
  for (const char* row : {"\ndmx,,5,", "\nkl,,5,", "\nuniform,E2M1,", "\nuniform,E3M2,",
                          "\nuniform,E4M3,", "\nfp32,"})
    EXPECT_NE(csv.find(row), std::string::npos) << row << " missing from\n" << csv;
  const nlohmann::json m = nlohmann::json::parse(read(dir / "out/runs/dmx_5/metrics.json"));
  EXPECT_EQ(m.at("loss"), "kd");
  EXPECT_EQ(m.at("settings").at("kl_windows"), 2);
  // The same settings: every point is reused, the CSV is the same.
  ASSERT_EQ(sweep("2", "2.txt"), 0) << read(dir / "2.txt");
  EXPECT_NE(read(dir / "2.txt").find("reusing"), std::string::npos);
  EXPECT_EQ(read(dir / "out" / "sweep.csv"), csv);
  // Other settings: the finished point is refused by name, nothing is overwritten.
  EXPECT_EQ(sweep("3", "3.txt"), 1);
  const std::string err = read(dir / "3.txt");
  EXPECT_NE(err.find("metrics.json"), std::string::npos) << err;
  EXPECT_NE(err.find("kl_windows"), std::string::npos) << err;
  EXPECT_EQ(read(dir / "out" / "sweep.csv"), csv);
  fs::remove_all(dir);
#endif
}

TEST(DmxSearchCli, SweepSeedsRunSearchedPointsPerSeedAndUniformOnce) {
#if !defined(DMX_SEARCH_BIN) || !defined(DMX_REPO)
  GTEST_SKIP() << "dmx-search was not built (CLI11 missing)";
#else
  const fs::path dir = temp_path("sweep_seeds");
  save_sweep_model(dir / "model");
  const std::string repo = DMX_REPO;
  auto sweep = [&](const std::string& seeds, const std::string& log) {
    const std::string cmd =
        std::string(DMX_SEARCH_BIN) + " sweep --model " + (dir / "model").string() +
        " --tokenizer " + repo + "/models/tokenizer.json --data " + repo +
        "/data/wiki.valid.raw --seqlen 32 --calib-windows 4 --eval-windows 4 --kl-windows 2" +
        " --steps 3 --lr 20 --loss kd --threads 1 --baselines off --budgets 5 --methods dmx kl" +
        " uniform --uniform-formats E2M1 --seeds " + seeds + " --out " + (dir / "out").string() +
        " >" + (dir / log).string() + " 2>&1";
    return WEXITSTATUS(std::system(cmd.c_str()));
  };
  auto read = [](const fs::path& p) {
    std::ifstream f(p);
    return std::string((std::istreambuf_iterator<char>(f)), {});
  };
  EXPECT_EQ(sweep("0 3 0", "dup.txt"), 2);
  EXPECT_NE(read(dir / "dup.txt").find("--seeds: seed 0 is given twice"), std::string::npos)
      << read(dir / "dup.txt");
  ASSERT_EQ(sweep("0 3", "1.txt"), 0) << read(dir / "1.txt");
  const std::string csv = read(dir / "out" / "sweep.csv");
  auto count = [&](const std::string& prefix) {
    int n = 0;
    for (size_t at = csv.find("\n" + prefix); at != std::string::npos;
         at = csv.find("\n" + prefix, at + 1))
      ++n;
    return n;
  };
  EXPECT_EQ(count("dmx,,5,"), 2) << csv;
  EXPECT_EQ(count("kl,,5,"), 2) << csv;
  EXPECT_EQ(count("uniform,E2M1,"), 1) << csv;
  EXPECT_EQ(count("fp32,"), 1) << csv;
  // Seed 0 keeps the unsuffixed names; seed 3's points record it and drew other windows, so
  // its KL ranking differs from seed 0's.
  const auto m0 = nlohmann::json::parse(read(dir / "out/runs/kl_5/metrics.json"));
  const auto m3 = nlohmann::json::parse(read(dir / "out/runs/kl_5_seed3/metrics.json"));
  EXPECT_EQ(m0.at("seed"), 0);
  EXPECT_EQ(m3.at("seed"), 3);
  EXPECT_EQ(m3.at("settings").at("seed"), 3);
  EXPECT_NE(m0.at("kl_sensitivity"), m3.at("kl_sensitivity"));
  EXPECT_TRUE(fs::exists(dir / "out/runs/dmx_5_seed3/metrics.json"));
  EXPECT_FALSE(fs::exists(dir / "out/runs/uniform_E2M1_seed3"));
  // Rerun: every point of both seeds is reused.
  ASSERT_EQ(sweep("0 3", "2.txt"), 0) << read(dir / "2.txt");
  EXPECT_EQ(read(dir / "out" / "sweep.csv"), csv);
  fs::remove_all(dir);
#endif
}
