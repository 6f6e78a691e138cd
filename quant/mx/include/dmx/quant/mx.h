// MX fake quantization in LibTorch: the exact operator for the six OCP formats (bit-equal to
// golden quantize_block + dequantize_block), the continuous formats of the dMX search
// (quant/search/README.md, "The dMX method") with gradients to the format offset b, and a Linear wrapper that quantizes a
// decoder Linear's weights and input activations.
#pragma once

#include <ATen/core/Tensor.h>
#include <dmx/golden.h>

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "dmx/quant/model.h"

namespace dmx::quant {

// ---- Exact operator --------------------------------------------------------------------------
// x quantized to MX `f` and dequantized, blocks of 32 along the last dimension (a partial last
// block is zero-padded, as golden's rows are), default golden policies (FLOOR scale, SAT, a block
// holding NaN/Inf becomes NaN). Weights [out, in]: blocks along `in`; activations [..., hidden]:
// blocks along `hidden`, scales per token computed at run time. Returns FP32, no gradient.
at::Tensor mx_fake_quant(const at::Tensor& x, MxFormat f);

// ---- Continuous formats (quant/search/README.md, "The dMX method") --------------------------------------------------------
enum class FormatSpace {
  EM,   // E(2+b)M(1+b): b = 0 E2M1 (MXFP4), b = 1 E3M2 (MXFP6), b = 2 E4M3 (MXFP8); 4 + 2b bits
  E2M,  // E2M(1+b):    b = 0 E2M1 (MXFP4), b = 2 E2M3 (MXFP6); 4 + b bits
};
const char* space_name(FormatSpace s);
std::optional<FormatSpace> parse_space(const std::string& s);

// The format's constants as differentiable functions of b (0-dim FP32 tensors):
// e, m, bias = 2^(e-1) - 1, emax = 2^e - 1 - bias, maxmant = 2 (1 - 2^(-m-1)),
// max = maxmant * 2^emax, min_exp = 1 - bias - m (log2 of the subnormal step).
// EM space: max is clamped to golden's E4M3 max_normal (448): the generic formula gives 480 at
// b = 2 because it counts OCP E4M3's top code (S.1111.111) as a number, but that code is NaN. The
// clamp only bites for b > ~1.98, so max(b) stays continuous and monotone.
struct ContinuousFormat {
  at::Tensor e, m, bias, emax, max_value, min_exp;
};
ContinuousFormat continuous_format(const at::Tensor& b, FormatSpace space);
// Storage bits of one element at offset b: EM 4 + 2b, E2M 4 + b (differentiable).
at::Tensor continuous_bits(const at::Tensor& b, FormatSpace space);
double format_bits_at(double b, FormatSpace space);
// The standard format an integer offset names (EM: 0, 1, 2; E2M: 0, 2).
MxFormat format_at(int b, FormatSpace space);

// Fake quantization to the continuous format at offset b (0-dim tensor, may require grad), blocks
// of 32 along the last dimension. The shared scale is 2^(floor(log2 amax) - floor(emax(b))) (an
// E8M0 power of two, no gradient); element step = 2^max(floor(log2|x|) - m, min_exp) relative to
// it; values rounded half-to-even with a straight-through estimator; clamp at +-max(b). b gets
// gradients through the step and the clamp. At b in {0, 1, 2} (EM) / {0, 2} (E2M) the forward
// equals mx_fake_quant of the standard format for finite inputs of normal range.
at::Tensor mx_fake_quant_continuous(const at::Tensor& x, const at::Tensor& b, FormatSpace space);

// ---- Learnable offsets -------------------------------------------------------------------------
// theta -> b with temperature annealing: r = |theta| (subgradient +1 at 0 so theta = 0 moves),
// 2 rungs: b = 2 sigmoid(T' (r - 1)), hard: r > 1 ? 2 : 0;
// 3 rungs: b = sigmoid(T' (r - 0.5)) + sigmoid(T' (r - 1.5)), hard: [r > 0.5] + [r > 1.5].
at::Tensor offset_from_theta(const at::Tensor& theta, double t_prime, int rungs);
int hard_offset(double theta, int rungs);

// ---- The Linear wrapper ------------------------------------------------------------------------
// Quantizes the weight (blocks along in_features) and the input activation (blocks along the
// hidden dimension) of one decoder Linear. Modes: unquantized, fixed standard formats (exact
// operator, the weight quantized once), or learned offsets (continuous formats in training, the
// hard-thresholded standard formats in eval).
struct LearnedOffsets {
  FormatSpace space = FormatSpace::EM;
  int rungs = 2;        // 2: MXFP4/MXFP8 (E2M: MXFP4/MXFP6); 3: MXFP4/MXFP6/MXFP8 (EM only)
  bool untied = false;  // separate weight and activation offsets
};

class MxLinear : public Linear {
 public:
  explicit MxLinear(const Linear& base);
  // nullopt leaves that operand in FP32.
  void set_fixed(std::optional<MxFormat> wfmt, std::optional<MxFormat> afmt);
  void set_learned(const LearnedOffsets& cfg);
  bool learned() const { return learned_; }
  void set_temperature(double t_prime) { t_prime_ = t_prime; }
  void set_hard(bool hard) { hard_ = hard; }

  at::Tensor forward(const at::Tensor& x) override;
  std::vector<std::pair<std::string, at::Tensor>> extra_parameters() const override;

  // Learned mode: thetas (act aliases weight when tied), soft offsets at the current temperature.
  at::Tensor theta_weight() const { return theta_w_; }
  at::Tensor theta_act() const { return untied_ ? theta_a_ : theta_w_; }
  at::Tensor offset_weight() const;
  at::Tensor offset_act() const;
  // Formats used now: fixed formats, or the hard-thresholded learned ones.
  std::optional<MxFormat> weight_format() const;
  std::optional<MxFormat> act_format() const;
  const LearnedOffsets& learned_config() const { return cfg_; }

 private:
  at::Tensor quantized_weight(MxFormat f);
  bool learned_ = false, hard_ = false, untied_ = false;
  double t_prime_ = 4.0;
  LearnedOffsets cfg_;
  std::optional<MxFormat> wfmt_, afmt_;
  at::Tensor theta_w_, theta_a_;
  std::optional<MxFormat> cached_fmt_;
  at::Tensor cached_wq_;
};
using MxLinearPtr = std::shared_ptr<MxLinear>;

// Replaces every decoder Linear of `model` (q, k, v, o, gate, up, down) by an MxLinear (kept if
// already one) and returns them in model order. Embeddings and lm_head are never touched here.
std::vector<MxLinearPtr> wrap_decoder_linears(CausalLM& model);
// Only when asked: quantizes the token embedding table and/or the lm_head weight to `f` in place
// (weight-only; blocks along the hidden dimension). With tied embeddings both are one tensor.
void quantize_embedding_weights(CausalLM& model, MxFormat f, bool embed, bool lm_head);

}  // namespace dmx::quant
