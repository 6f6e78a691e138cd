// quant/mx: the MX fake-quant operator against golden, the continuous formats (constants,
// exactness at the rungs, gradient vs finite differences), the learnable offsets, MxLinear.
#include "search_test_util.h"

using namespace search_test;

TEST(MxFakeQuant, MatchesGoldenBitForBit) {
  for (MxFormat f : kAllFormats) {
    for (uint64_t seed : {1u, 2u}) {
      SCOPED_TRACE(std::string(format_name(f)) + " seed " + std::to_string(seed));
      const at::Tensor x = test_tensor(seed, 8, 96 + 8 * seed);  // 104 / 112: a partial block
      const at::Tensor q = mx_fake_quant(x, f);
      ASSERT_EQ(q.sizes(), x.sizes());
      EXPECT_EQ(bitwise_diff(q, golden_fake_quant(x, f), x), "");
    }
  }
}

TEST(MxFakeQuant, ActivationShapeBlocksAlongHidden) {
  const at::Tensor x = test_tensor(3, 6, 64).view({2, 3, 64});
  const at::Tensor q = mx_fake_quant(x, MxFormat::E2M1);
  EXPECT_EQ(bitwise_diff(q.view({6, 64}), golden_fake_quant(x.view({6, 64}), MxFormat::E2M1),
                         x.view({6, 64})),
            "");
}

// ---- Continuous formats ------------------------------------------------------------------------
TEST(ContinuousFormat, ConstantsCoincideWithGolden) {
  struct Case {
    double b;
    FormatSpace space;
    MxFormat f;
  } cases[] = {{0, FormatSpace::EM, MxFormat::E2M1},
               {1, FormatSpace::EM, MxFormat::E3M2},
               {2, FormatSpace::EM, MxFormat::E4M3},
               {0, FormatSpace::E2M, MxFormat::E2M1},
               {2, FormatSpace::E2M, MxFormat::E2M3}};
  for (const auto& c : cases) {
    SCOPED_TRACE(format_name(c.f));
    const FormatInfo& g = format_info(c.f);
    const ContinuousFormat cf = continuous_format(at::full({}, c.b), c.space);
    EXPECT_EQ(cf.e.item<double>(), g.ebits);
    EXPECT_EQ(cf.m.item<double>(), g.mbits);
    EXPECT_EQ(cf.bias.item<double>(), g.bias);
    EXPECT_EQ(cf.emax.item<double>(), g.emax);
    EXPECT_EQ(cf.max_value.item<double>(), g.max_normal);
    EXPECT_EQ(cf.min_exp.item<double>(), g.quantum_exp);
    EXPECT_EQ(format_bits_at(c.b, c.space), g.bits);
    EXPECT_EQ(format_at(int(c.b), c.space), c.f);
  }
  // The generic formula's E4M3 max is 480 (the NaN code): only the clamp makes it 448, and the
  // clamped max stays monotone and continuous just below b = 2.
  const double b = 1.99;
  const ContinuousFormat near = continuous_format(at::full({}, b), FormatSpace::EM);
  const double m = 1 + b, e = 2 + b, bias = std::pow(2, e - 1) - 1;
  const double formula = 2 * (1 - std::pow(2, -m - 1)) * std::pow(2, std::pow(2, e) - 1 - bias);
  EXPECT_GT(formula, 448.0);
  EXPECT_EQ(near.max_value.item<double>(), 448.0);
  EXPECT_NEAR(
      continuous_format(at::full({}, 1.5), FormatSpace::EM).max_value.item<double>(),
      2 * (1 - std::pow(2, -3.5)) * std::pow(2, std::pow(2, 3.5) - 1 - (std::pow(2, 2.5) - 1)),
      1e-3);
}

TEST(ContinuousFormat, ForwardEqualsStandardFormatsAtTheRungs) {
  // Finite inputs of normal range (the continuous op works in FP32; see mx.h).
  std::mt19937_64 rng(11);
  std::normal_distribution<float> nd(0, 1);
  std::uniform_int_distribution<int> ex(-60, 60);
  at::Tensor x = at::empty({16, 128}, at::kFloat);
  float* p = x.data_ptr<float>();
  for (int64_t i = 0; i < x.numel(); i += 32) {
    const float sc = std::ldexp(1.0f, ex(rng));
    for (int k = 0; k < 32; ++k) p[i + k] = nd(rng) * sc;
  }
  for (int k = 0; k < 32; ++k) p[k] = (k % 2) ? -0.0f : 0.0f;  // a zero block
  p[40] = 0.0f;
  p[41] = -0.0f;
  p[42] = -1e-30f;  // rounds to -0
  for (auto [b, space, f] : {std::tuple{0, FormatSpace::EM, MxFormat::E2M1},
                             std::tuple{1, FormatSpace::EM, MxFormat::E3M2},
                             std::tuple{2, FormatSpace::EM, MxFormat::E4M3},
                             std::tuple{0, FormatSpace::E2M, MxFormat::E2M1},
                             std::tuple{2, FormatSpace::E2M, MxFormat::E2M3}}) {
    SCOPED_TRACE(format_name(f));
    const at::Tensor bt = at::full({}, double(b)).to(at::kFloat).set_requires_grad(true);
    const at::Tensor q = mx_fake_quant_continuous(x, bt, space).detach();
    EXPECT_EQ(bitwise_diff(q, golden_fake_quant(x, f), x), "");
  }
}

TEST(ContinuousFormat, GradientMatchesFiniteDifference) {
  // The STE gradient of sum(w * q(x, b)) is the exact derivative of the same sum with every
  // element's rounding offset round(x/step) - x/step frozen: q = clamp(x + c * step(b), +-max(b)).
  // That function is recomputed here from the dMX method's formulas (quant/search/README.md) in
  // FP64 (std::pow, not the library) and differentiated by central differences.
  at::manual_seed(5);
  const int64_t rows = 256;
  const at::Tensor x =
      at::randn({rows, 32}) * at::exp2(at::randint(-4, 4, {rows, 1}).to(at::kFloat));
  const at::Tensor wts = at::randn({rows, 32});
  for (FormatSpace sp : {FormatSpace::EM, FormatSpace::E2M}) {
    for (double b0 : {0.3, 0.8, 1.4, 1.97}) {
      SCOPED_TRACE(std::string(space_name(sp)) + " b=" + std::to_string(b0));
      at::Tensor b = at::full({}, b0).to(at::kFloat).set_requires_grad(true);
      const at::Tensor q = mx_fake_quant_continuous(x, b, sp);
      (q * wts).sum().backward();
      const double g = b.grad().item<double>();
      auto consts = [&](double bb, double& m, double& bias, double& mx) {
        const double e = sp == FormatSpace::EM ? 2 + bb : 2;
        m = 1 + bb;
        bias = std::pow(2, e - 1) - 1;
        mx = 2 * (1 - std::pow(2, -m - 1)) * std::pow(2, std::pow(2, e) - 1 - bias);
        if (sp == FormatSpace::EM) mx = std::min(mx, 448.0);
        return std::floor(std::pow(2, e) - 1 - bias);
      };
      double m0, bias0, mx0;
      const double emax_int = consts(b0, m0, bias0, mx0);
      auto frozen = [&](double bb, bool at_b0, double* exact_sum) {
        double m, bias, mx;
        consts(bb, m, bias, mx);
        double sum = 0;
        for (int64_t r = 0; r < rows; ++r) {
          double amax = 0;
          for (int k = 0; k < 32; ++k) amax = std::max(amax, std::fabs(x[r][k].item<double>()));
          const double s = std::floor(std::log2(amax)) - emax_int;  // amax not a power of 2 here
          for (int k = 0; k < 32; ++k) {
            const double v = x[r][k].item<double>();
            auto step_at = [&](double mm, double bi) {
              return std::pow(2,
                              std::max(std::floor(std::log2(std::fabs(v))) - mm, s + 1 - bi - mm));
            };
            const double st0 = step_at(m0, bias0);
            const double c = std::nearbyint(v / st0) - v / st0;  // frozen at b0
            double qv = at_b0 ? st0 * std::nearbyint(v / st0) : v + c * step_at(m, bias);
            const double lim = mx * std::pow(2, s);
            qv = std::max(-lim, std::min(lim, qv));
            sum += wts[r][k].item<double>() * qv;
          }
        }
        if (exact_sum) *exact_sum = sum;
        return sum;
      };
      const double h = 1e-4;
      const double fd = (frozen(b0 + h, false, nullptr) - frozen(b0 - h, false, nullptr)) / (2 * h);
      EXPECT_NEAR(g, fd, 1e-3 * std::fabs(fd) + 1e-3) << "autograd " << g << " fd " << fd;
      // And the forward is that function at b0.
      double f0 = 0;
      frozen(b0, true, &f0);
      EXPECT_NEAR((q * wts).sum().item<double>(), f0, 1e-3 * std::fabs(f0) + 1e-3);
    }
  }
}

TEST(Offsets, AnnealingThresholdsAndGradientAtZero) {
  at::Tensor theta = at::zeros({}, at::kFloat).set_requires_grad(true);
  at::Tensor b = offset_from_theta(theta, 4.0, 2);
  EXPECT_NEAR(b.item<double>(), 2.0 / (1.0 + std::exp(4.0)), 1e-6);
  b.backward();
  EXPECT_GT(theta.grad().item<double>(), 0.0);  // theta = 0 is not stuck
  EXPECT_EQ(hard_offset(0.99, 2), 0);
  EXPECT_EQ(hard_offset(-1.01, 2), 2);
  EXPECT_EQ(hard_offset(0.6, 3), 1);
  EXPECT_EQ(hard_offset(1.6, 3), 2);
  EXPECT_EQ(hard_offset(0.4, 3), 0);
  // High temperature approaches the hard rungs.
  EXPECT_NEAR(offset_from_theta(at::full({}, 1.3), 200.0, 2).item<double>(), 2.0, 1e-6);
  EXPECT_NEAR(offset_from_theta(at::full({}, 1.0), 200.0, 3).item<double>(), 1.0, 1e-6);
}

// ---- Wrapper -----------------------------------------------------------------------------------
TEST(MxLinear, FixedFormatsQuantizeWeightsAndActivations) {
  at::manual_seed(3);
  Linear base("l", at::randn({48, 64}), at::randn({48}));
  MxLinear q(base);
  q.set_fixed(MxFormat::E2M1, MxFormat::E4M3);
  const at::Tensor x = at::randn({2, 5, 64});
  const at::Tensor want = at::linear(golden_fake_quant(x.view({10, 64}), MxFormat::E4M3),
                                     golden_fake_quant(base.weight, MxFormat::E2M1), base.bias);
  EXPECT_TRUE(at::equal(q.forward(x).view({10, 48}), want));
  q.set_fixed(std::nullopt, std::nullopt);
  EXPECT_TRUE(at::equal(q.forward(x), base.forward(x)));
}

TEST(MxLinear, WrapsEveryDecoderLinearOnly) {
  CausalLM m = CausalLM::random(tiny_config(), 1);
  const auto emb = m.named_parameters().front().second.clone();
  auto lins = wrap_decoder_linears(m);
  EXPECT_EQ(lins.size(), 14u);
  for (size_t i = 0; i < lins.size(); ++i) EXPECT_EQ(m.linear(m.linear_names()[i]), lins[i]);
  EXPECT_TRUE(at::equal(m.named_parameters().front().second, emb));
  quantize_embedding_weights(m, MxFormat::E2M1, true, false);
  EXPECT_TRUE(
      at::equal(m.named_parameters().front().second, golden_fake_quant(emb, MxFormat::E2M1)));
}

// ---- Cost models and the regularizer -----------------------------------------------------------
