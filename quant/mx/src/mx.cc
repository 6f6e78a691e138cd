// MX fake quantization: exact operator, continuous formats, learnable offsets, Linear wrapper.
#include "dmx/quant/mx.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

namespace dmx::quant {
namespace {

// 2^k for an int64 tensor k in [-1022, 1023], as FP64 built from the exponent bits (exact; a
// floating-point exp2 is not guaranteed to be).
at::Tensor pow2_exact(const at::Tensor& k) {
  return ((k.to(at::kLong) + 1023) * (int64_t(1) << 52)).view(at::kDouble);
}

// floor(log2 |v|) of non-zero finite FP64 values, exactly (frexp reads the exponent bits).
at::Tensor floor_log2_exact(const at::Tensor& v) {
  return std::get<1>(at::frexp(v)).to(at::kLong) - 1;
}

// 2^t, differentiable in t, exact where t is an integer: 2^frac(t) * 2^floor(t).
at::Tensor pow2_smooth(const at::Tensor& t) {
  at::Tensor fl = at::floor(t).detach();
  return at::exp2(t - fl) * pow2_exact(fl.clamp(-1022, 1023)).to(t.scalar_type());
}

// [..., n] -> [rows, nblocks, 32] (zero padded); `n` and `np` report the original/padded length.
at::Tensor to_blocks(const at::Tensor& x, int64_t& n, int64_t& np) {
  n = x.size(-1);
  np = static_cast<int64_t>(padded_length(static_cast<size_t>(n)));
  at::Tensor r = x.reshape({-1, n});
  if (np != n) r = at::constant_pad_nd(r, {0, np - n});
  return r.view({r.size(0), np / kBlockSize, kBlockSize});
}

at::Tensor from_blocks(const at::Tensor& b, const at::Tensor& like, int64_t n, int64_t np) {
  at::Tensor r = b.reshape({b.size(0), np});
  if (np != n) r = r.narrow(1, 0, n);
  return r.reshape(like.sizes());
}

// round() forward (half to even, sign of zero kept), identity backward.
struct RoundSte : public torch::autograd::Function<RoundSte> {
  static at::Tensor forward(torch::autograd::AutogradContext*, const at::Tensor& y) {
    return at::round(y);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext*,
                                                 torch::autograd::variable_list g) {
    return {g[0]};
  }
};

}  // namespace

// ---- Exact operator --------------------------------------------------------------------------
at::Tensor mx_fake_quant(const at::Tensor& x, MxFormat f) {
  const FormatInfo& info = format_info(f);
  at::NoGradGuard no_grad;
  int64_t n = 0, np = 0;
  // FP64 holds every FP32 value times any scale 2^-s (|s| <= 127) exactly.
  at::Tensor xb = to_blocks(x.detach().to(at::kFloat), n, np).to(at::kDouble);
  at::Tensor finite = at::isfinite(xb).all(-1, /*keepdim=*/true);
  at::Tensor amax = at::where(finite, xb.abs().amax(-1, true), at::ones_like(finite, xb.options()));
  at::Tensor zero_block = amax == 0;
  at::Tensor s = floor_log2_exact(at::where(zero_block, at::ones_like(amax), amax)) - info.emax;
  s = at::where(zero_block, at::full_like(s, -127), s.clamp_min(-127));
  at::Tensor xs = xb * pow2_exact(-s);
  at::Tensor q;
  if (info.is_int) {
    const double lim = static_cast<double>(info.max_magnitude);
    q = at::round(xs * pow2_exact(at::full_like(s, -info.quantum_exp))).clamp(-lim, lim) *
        pow2_exact(at::full_like(s, info.quantum_exp));
    q = q + 0.0;  // two's complement has no -0
  } else {
    at::Tensor ax = xs.abs();
    at::Tensor e = floor_log2_exact(at::where(ax == 0, at::ones_like(ax), ax));
    at::Tensor step_exp = (e - info.mbits).clamp_min(info.quantum_exp);
    q = at::round(xs * pow2_exact(-step_exp)) * pow2_exact(step_exp);
    q = q.clamp(-double(info.max_normal), double(info.max_normal));
  }
  at::Tensor out = (q * pow2_exact(s)).to(at::kFloat);
  out = at::where(finite, out, at::full_like(out, std::numeric_limits<float>::quiet_NaN()));
  return from_blocks(out, x, n, np);
}

// ---- Continuous formats ----------------------------------------------------------------------
const char* space_name(FormatSpace s) { return s == FormatSpace::EM ? "em" : "e2m"; }
std::optional<FormatSpace> parse_space(const std::string& s) {
  if (s == "em" || s == "EM") return FormatSpace::EM;
  if (s == "e2m" || s == "E2M") return FormatSpace::E2M;
  return std::nullopt;
}

ContinuousFormat continuous_format(const at::Tensor& b, FormatSpace space) {
  ContinuousFormat c;
  at::Tensor bf = b.to(at::kFloat);
  c.e = space == FormatSpace::EM ? bf + 2.0 : at::zeros_like(bf) + 2.0;
  c.m = bf + 1.0;
  c.bias = pow2_smooth(c.e - 1.0) - 1.0;
  c.emax = pow2_smooth(c.e) - 1.0 - c.bias;
  at::Tensor maxmant = 2.0 * (1.0 - pow2_smooth(-c.m - 1.0));
  c.max_value = maxmant * pow2_smooth(c.emax);
  if (space == FormatSpace::EM) {
    // OCP E4M3 spends its top code on NaN: clamp to golden's max normal (448, not 480).
    c.max_value = at::minimum(c.max_value,
                              at::full_like(c.max_value, format_info(MxFormat::E4M3).max_normal));
  }
  c.min_exp = 1.0 - c.bias - c.m;
  return c;
}

at::Tensor continuous_bits(const at::Tensor& b, FormatSpace space) {
  return space == FormatSpace::EM ? 4.0 + 2.0 * b : 4.0 + b;
}
double format_bits_at(double b, FormatSpace space) {
  return space == FormatSpace::EM ? 4.0 + 2.0 * b : 4.0 + b;
}

MxFormat format_at(int b, FormatSpace space) {
  if (space == FormatSpace::EM) {
    if (b == 0) return MxFormat::E2M1;
    if (b == 1) return MxFormat::E3M2;
    if (b == 2) return MxFormat::E4M3;
  } else {
    if (b == 0) return MxFormat::E2M1;
    if (b == 2) return MxFormat::E2M3;
  }
  throw std::invalid_argument("no standard format at offset " + std::to_string(b) + " of the " +
                              space_name(space) + " space");
}

at::Tensor mx_fake_quant_continuous(const at::Tensor& x, const at::Tensor& b, FormatSpace space) {
  const ContinuousFormat c = continuous_format(b, space);
  int64_t n = 0, np = 0;
  at::Tensor xb = to_blocks(x.to(at::kFloat), n, np);
  at::Tensor xd = xb.detach();
  // Shared E8M0 scale: power of two, no gradient.
  const double emax_int = std::floor(c.emax.item<double>());
  at::Tensor amax = xd.abs().amax(-1, true).to(at::kDouble);
  at::Tensor zero_block = amax == 0;
  at::Tensor s = floor_log2_exact(at::where(zero_block, at::ones_like(amax), amax)) -
                 static_cast<int64_t>(emax_int);
  s = at::where(zero_block, at::full_like(s, -127), s.clamp_min(-127));
  at::Tensor s_f = s.to(at::kFloat);
  // Element step in the unscaled domain: 2^(max(floor(log2|x|) - m, s + min_exp)).
  at::Tensor ax = xd.abs().to(at::kDouble);
  at::Tensor fl = at::where(ax == 0, at::full_like(s, -1000),
                            floor_log2_exact(at::where(ax == 0, at::ones_like(ax), ax)))
                      .to(at::kFloat);
  at::Tensor step = pow2_smooth(at::maximum(fl - c.m, s_f + c.min_exp));
  at::Tensor q = RoundSte::apply(xb / step) * step;
  at::Tensor maxv = c.max_value * pow2_exact(s).to(at::kFloat);
  q = at::where(q > maxv, maxv, at::where(q < -maxv, -maxv, q));
  at::Tensor finite = at::isfinite(xd).all(-1, true);
  q = at::where(finite, q, at::full_like(q, std::numeric_limits<float>::quiet_NaN()));
  return from_blocks(q, x, n, np);
}

// ---- Learnable offsets -------------------------------------------------------------------------
at::Tensor offset_from_theta(const at::Tensor& theta, double t_prime, int rungs) {
  // |theta| with subgradient +1 at 0: torch's abs has gradient 0 there and theta = 0 would stick.
  at::Tensor sgn = at::where(theta.detach() >= 0, at::ones_like(theta), -at::ones_like(theta));
  at::Tensor r = theta * sgn;
  if (rungs == 3) return at::sigmoid(t_prime * (r - 0.5)) + at::sigmoid(t_prime * (r - 1.5));
  return 2.0 * at::sigmoid(t_prime * (r - 1.0));
}

int hard_offset(double theta, int rungs) {
  const double r = std::fabs(theta);
  if (rungs == 3) return (r > 0.5 ? 1 : 0) + (r > 1.5 ? 1 : 0);
  return r > 1.0 ? 2 : 0;
}

// ---- MxLinear ----------------------------------------------------------------------------------
MxLinear::MxLinear(const Linear& base) : Linear(base.name(), base.weight, base.bias) {}

void MxLinear::set_fixed(std::optional<MxFormat> wfmt, std::optional<MxFormat> afmt) {
  learned_ = false;
  wfmt_ = wfmt;
  afmt_ = afmt;
}

void MxLinear::set_learned(const LearnedOffsets& cfg) {
  if (cfg.rungs != 2 && cfg.rungs != 3) throw std::invalid_argument("rungs must be 2 or 3");
  if (cfg.rungs == 3 && cfg.space != FormatSpace::EM)
    throw std::invalid_argument("the three-rung ladder needs the E(2+b)M(1+b) space");
  learned_ = true;
  cfg_ = cfg;
  untied_ = cfg.untied;
  theta_w_ = at::zeros({}, at::kFloat).set_requires_grad(true);
  theta_a_ = untied_ ? at::zeros({}, at::kFloat).set_requires_grad(true) : at::Tensor();
}

at::Tensor MxLinear::offset_weight() const {
  return offset_from_theta(theta_w_, t_prime_, cfg_.rungs);
}
at::Tensor MxLinear::offset_act() const {
  return offset_from_theta(theta_act(), t_prime_, cfg_.rungs);
}

std::optional<MxFormat> MxLinear::weight_format() const {
  if (!learned_) return wfmt_;
  return format_at(hard_offset(theta_w_.item<double>(), cfg_.rungs), cfg_.space);
}
std::optional<MxFormat> MxLinear::act_format() const {
  if (!learned_) return afmt_;
  return format_at(hard_offset(theta_act().item<double>(), cfg_.rungs), cfg_.space);
}

std::vector<std::pair<std::string, at::Tensor>> MxLinear::extra_parameters() const {
  if (!learned_) return {};
  if (untied_) return {{"theta_weight", theta_w_}, {"theta_act", theta_a_}};
  return {{"theta", theta_w_}};
}

at::Tensor MxLinear::quantized_weight(MxFormat f) {
  if (!cached_fmt_ || *cached_fmt_ != f || !cached_wq_.defined()) {
    cached_wq_ = mx_fake_quant(weight, f).to(weight.scalar_type());
    cached_fmt_ = f;
  }
  return cached_wq_;
}

at::Tensor MxLinear::forward(const at::Tensor& x) {
  if (learned_ && !hard_) {
    const at::Tensor wq = mx_fake_quant_continuous(weight, offset_weight(), cfg_.space);
    const at::Tensor xq = mx_fake_quant_continuous(x, offset_act(), cfg_.space);
    return at::linear(xq.to(x.scalar_type()), wq.to(x.scalar_type()), bias);
  }
  const auto wf = weight_format();
  const auto af = act_format();
  const at::Tensor w = wf ? quantized_weight(*wf) : weight;
  const at::Tensor xq = af ? mx_fake_quant(x, *af).to(x.scalar_type()) : x;
  return at::linear(xq, w, bias);
}

std::vector<MxLinearPtr> wrap_decoder_linears(CausalLM& model) {
  std::vector<MxLinearPtr> out;
  for (const std::string& name : model.linear_names()) {
    LinearPtr l = model.linear(name);
    auto mx = std::dynamic_pointer_cast<MxLinear>(l);
    if (!mx) {
      mx = std::make_shared<MxLinear>(*l);
      model.set_linear(name, mx);
    }
    out.push_back(mx);
  }
  return out;
}

void quantize_embedding_weights(CausalLM& model, MxFormat f, bool embed, bool lm_head) {
  at::NoGradGuard no_grad;
  for (auto& [name, t] : model.named_parameters()) {
    const bool is_embed = name == "model.embed_tokens.weight";
    const bool is_head = name == "lm_head.weight";
    const bool tied = model.config().tie_word_embeddings;
    if ((is_embed && (embed || (tied && lm_head))) || (is_head && lm_head))
      t.copy_(mx_fake_quant(t, f).to(t.scalar_type()));
  }
}

}  // namespace dmx::quant
