// The blocked causal attention (dmx::quant::causal_attention, which CausalLM::forward and
// forward_cached call) against the implementation it replaced, kept here as it was in
// quant/src/model.cc (the whole [B, heads, T, p0 + T] score matrix, a materialized boolean causal
// mask, repeat_interleave for GQA), and against plain loops in double: values for several window
// lengths around the block size, GQA / MQA / MHA, batch 2, a cached prefix (p0 > 0), BF16, and the
// gradients of q, k and v.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "dmx/quant/model.h"

using namespace dmx::quant;

namespace {

// The previous attention of CausalLM (before the blocked attention), in the [B, heads, T, head_dim] layout.
at::Tensor previous_attention(const at::Tensor& q, at::Tensor k, at::Tensor v, int64_t p0,
                              at::ScalarType dtype) {
  const int64_t T = q.size(2), nh = q.size(1), nkv = k.size(1), hd = q.size(3);
  const at::Tensor causal =
      T > 1 ? at::ones({T, p0 + T}, at::TensorOptions().dtype(at::kBool)).triu(p0 + 1)
            : at::Tensor();
  const double scaling = 1.0 / std::sqrt(static_cast<double>(hd));
  if (nh != nkv) {
    k = k.repeat_interleave(nh / nkv, 1);
    v = v.repeat_interleave(nh / nkv, 1);
  }
  at::Tensor scores = at::matmul(q, k.transpose(-1, -2)) * scaling;
  if (causal.defined())
    scores = scores.masked_fill(causal, -std::numeric_limits<double>::infinity());
  at::Tensor probs = at::softmax(scores, -1, at::kFloat).to(dtype);
  return at::matmul(probs, v);
}

// [B, heads, T, hd] <-> the grouped layout [B, kv_heads, T, group, hd] (head i = kv * group + j).
at::Tensor grouped(const at::Tensor& q4, int64_t nkv) {
  const int64_t B = q4.size(0), nh = q4.size(1), T = q4.size(2), hd = q4.size(3);
  return q4.view({B, nkv, nh / nkv, T, hd}).permute({0, 1, 3, 2, 4});
}
at::Tensor ungrouped(const at::Tensor& q5) {
  const int64_t B = q5.size(0), nkv = q5.size(1), T = q5.size(2), g = q5.size(3), hd = q5.size(4);
  return q5.permute({0, 1, 3, 2, 4}).reshape({B, nkv * g, T, hd});
}

// Plain loops in double over the [B, heads, T, hd] layout.
at::Tensor double_attention(const at::Tensor& q4, const at::Tensor& k, const at::Tensor& v,
                            int64_t p0) {
  const at::Tensor qd = q4.to(at::kDouble).contiguous(), kd = k.to(at::kDouble).contiguous(),
                   vd = v.to(at::kDouble).contiguous();
  const int64_t B = qd.size(0), nh = qd.size(1), T = qd.size(2), hd = qd.size(3), nkv = kd.size(1);
  at::Tensor out = at::zeros(qd.sizes(), at::kDouble);
  auto Q = qd.accessor<double, 4>();
  auto K = kd.accessor<double, 4>();
  auto V = vd.accessor<double, 4>();
  auto O = out.accessor<double, 4>();
  std::vector<double> s;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < nh; ++h) {
      const int64_t kh = h / (nh / nkv);
      for (int64_t t = 0; t < T; ++t) {
        const int64_t n = p0 + t + 1;
        s.assign(n, 0.0);
        double mx = -1e300;
        for (int64_t u = 0; u < n; ++u) {
          double d = 0;
          for (int64_t i = 0; i < hd; ++i) d += Q[b][h][t][i] * K[b][kh][u][i];
          s[u] = d / std::sqrt(static_cast<double>(hd));
          mx = std::max(mx, s[u]);
        }
        double z = 0;
        for (double& e : s) z += (e = std::exp(e - mx));
        for (int64_t u = 0; u < n; ++u)
          for (int64_t i = 0; i < hd; ++i) O[b][h][t][i] += s[u] / z * V[b][kh][u][i];
      }
    }
  return out;
}

double max_abs_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>();
}

struct Shape {
  int64_t B, nh, nkv, hd;
};

struct Inputs {
  at::Tensor q4, k, v;  // q [B, nh, T, hd]; k, v [B, nkv, p0 + T, hd]
};

// Scores of a few units so that the softmax is far from uniform (a wrong mask or offset shows).
Inputs make_inputs(const Shape& s, int64_t T, int64_t p0, uint64_t seed) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  const auto f = at::TensorOptions().dtype(at::kFloat);
  Inputs in;
  in.q4 = at::normal(0.0, 1.5, {s.B, s.nh, T, s.hd}, gen, f);
  in.k = at::normal(0.0, 1.5, {s.B, s.nkv, p0 + T, s.hd}, gen, f);
  in.v = at::normal(0.0, 1.0, {s.B, s.nkv, p0 + T, s.hd}, gen, f);
  return in;
}

const std::vector<int64_t> kLengths = {1, 5, 127, 128, 129, 300};

}  // namespace

TEST(Attention, BlockedMatchesPreviousImplementationAndDoubleLoops) {
  at::set_num_threads(1);
  const std::vector<Shape> shapes = {{2, 6, 2, 8}, {1, 3, 1, 16}, {2, 4, 4, 8}};  // GQA, MQA, MHA
  uint64_t seed = 100;
  for (const Shape& s : shapes)
    for (int64_t T : kLengths)
      for (int64_t p0 : {int64_t{0}, int64_t{45}})
        for (int64_t block : {int64_t{0}, int64_t{128}, int64_t{64}, int64_t{7}}) {
          ++seed;
          SCOPED_TRACE("seed " + std::to_string(seed) + " B " + std::to_string(s.B) + " heads " +
                       std::to_string(s.nh) + "/" + std::to_string(s.nkv) + " T " +
                       std::to_string(T) + " p0 " + std::to_string(p0) + " block " +
                       std::to_string(block));
          const Inputs in = make_inputs(s, T, p0, seed);
          const at::Tensor got =
              ungrouped(causal_attention(grouped(in.q4, s.nkv), in.k, in.v, p0, at::kFloat, block));
          ASSERT_EQ(got.sizes(), in.q4.sizes());
          const at::Tensor old = previous_attention(in.q4, in.k, in.v, p0, at::kFloat);
          EXPECT_LT(max_abs_diff(got, old), 2e-6);
          if (T <= 129 || block == 64) {  // the double loops are slow; cover every length once
            EXPECT_LT(max_abs_diff(got, double_attention(in.q4, in.k, in.v, p0)), 2e-6);
          }
        }
}

TEST(Attention, ADifferentOffsetOrMaskIsDetected) {
  // The comparisons above can fail: the same inputs read at another offset differ by far more
  // than their tolerance.
  at::set_num_threads(1);
  const Shape s{2, 6, 2, 8};
  const Inputs in = make_inputs(s, 129, 45, 7);
  const at::Tensor got = ungrouped(causal_attention(grouped(in.q4, 2), in.k, in.v, 45, at::kFloat));
  const at::Tensor shifted =
      previous_attention(in.q4, in.k.slice(2, 1), in.v.slice(2, 1), 44, at::kFloat);
  EXPECT_GT(max_abs_diff(got, shifted), 1e-2) << "seed 7";
}

TEST(Attention, GradientsMatchPreviousImplementation) {
  at::set_num_threads(1);
  const Shape s{2, 6, 2, 8};
  uint64_t seed = 500;
  for (int64_t T : {int64_t{5}, int64_t{129}, int64_t{300}})
    for (int64_t p0 : {int64_t{0}, int64_t{20}})
      for (int64_t block : {int64_t{0}, int64_t{64}}) {
        ++seed;
        SCOPED_TRACE("seed " + std::to_string(seed) + " T " + std::to_string(T) + " p0 " +
                     std::to_string(p0) + " block " + std::to_string(block));
        const Inputs in = make_inputs(s, T, p0, seed);
        at::Generator gen = at::detail::createCPUGenerator(seed + 1000);
        const at::Tensor w = at::normal(0.0, 1.0, in.q4.sizes(), gen, at::kFloat);
        std::vector<at::Tensor> grads[2];
        for (int impl = 0; impl < 2; ++impl) {
          at::Tensor q = in.q4.clone().requires_grad_(true);
          at::Tensor k = in.k.clone().requires_grad_(true);
          at::Tensor v = in.v.clone().requires_grad_(true);
          const at::Tensor out =
              impl == 0 ? ungrouped(causal_attention(grouped(q, 2), k, v, p0, at::kFloat, block))
                        : previous_attention(q, k, v, p0, at::kFloat);
          (out * w).sum().backward();
          grads[impl] = {q.grad(), k.grad(), v.grad()};
        }
        const char* names[3] = {"q", "k", "v"};
        for (int i = 0; i < 3; ++i) {
          ASSERT_TRUE(grads[0][i].defined()) << names[i];
          const double scale = grads[1][i].abs().max().item<double>();
          EXPECT_GT(scale, 1e-3) << names[i] << ": degenerate gradient";
          EXPECT_LT(max_abs_diff(grads[0][i], grads[1][i]), 1e-5 * std::max(1.0, scale))
              << "d/d" << names[i];
        }
      }
}

TEST(Attention, Bfloat16FollowsPreviousImplementation) {
  at::set_num_threads(1);
  const Shape s{2, 6, 2, 16};
  for (int64_t T : {int64_t{5}, int64_t{300}}) {
    const uint64_t seed = 900 + T;
    SCOPED_TRACE("seed " + std::to_string(seed) + " T " + std::to_string(T));
    Inputs in = make_inputs(s, T, 0, seed);
    in.q4 = in.q4.to(at::kBFloat16);
    in.k = in.k.to(at::kBFloat16);
    in.v = in.v.to(at::kBFloat16);
    const at::Tensor got = ungrouped(
        causal_attention(grouped(in.q4, s.nkv), in.k, in.v, 0, at::kBFloat16, /*block=*/64));
    EXPECT_EQ(got.scalar_type(), at::kBFloat16);
    const at::Tensor old = previous_attention(in.q4, in.k, in.v, 0, at::kBFloat16);
    // Both round the scores and the probabilities to BF16 (8 significant bits).
    EXPECT_LT(max_abs_diff(got, old), 3e-2);
    EXPECT_LT(max_abs_diff(got, double_attention(in.q4, in.k, in.v, 0)), 5e-2);
  }
}

TEST(Attention, RejectsMismatchedShapes) {
  const at::Tensor q = at::zeros({1, 2, 4, 2, 8}), k = at::zeros({1, 2, 6, 8});
  EXPECT_THROW(causal_attention(q, k, k, 0, at::kFloat), ModelError);  // 6 keys, 4 queries at 0
  EXPECT_NO_THROW(causal_attention(q, k, k, 2, at::kFloat));
  EXPECT_THROW(causal_attention(q.squeeze(0), k, k, 2, at::kFloat), ModelError);
  EXPECT_THROW(causal_attention(q, k, at::zeros({1, 2, 6, 4}), 2, at::kFloat), ModelError);
  EXPECT_THROW(set_attention_block(0), ModelError);
}
