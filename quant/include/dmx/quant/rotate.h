// Hadamard rotations (QuaRot / SpinQuant style): an orthonormal transform spreads outliers over a
// whole vector before MX quantization sees it, and is folded into the weights so that the FP32
// model computes the same function.
//
// HadamardTransform(n) builds H_n as a Kronecker product of +-1 factors (Sylvester orders <= 64
// and one Paley order: 12, 20, 28, 36, 44, ... from a prime q as q + 1 or 2 (q + 1)), scaled by
// 1/sqrt(n), so applying it costs sum(factor orders) multiply-adds per element instead of n.
// Sizes with no such construction (an odd part that is no Paley order) are refused by name.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <string>
#include <vector>

namespace dmx::quant {

// A +-1 Hadamard matrix of `order` (1, 2, Sylvester 2^k or a Paley order), FP64, or undefined.
at::Tensor hadamard_pm1(int64_t order);

class HadamardTransform {
 public:
  // Throws std::invalid_argument ("no Hadamard construction of order n ...") when n has none.
  explicit HadamardTransform(int64_t n);
  static bool supported(int64_t n);

  int64_t size() const { return n_; }
  // The +-1 factors (FP32), outermost first: H = (F_0 kron F_1 kron ...) / sqrt(n).
  const std::vector<at::Tensor>& factors() const { return factors_; }
  // x [..., n] -> x H in x's dtype (differentiable; FP32 arithmetic).
  at::Tensor apply(const at::Tensor& x) const;
  // H as a dense [n, n] FP64 matrix (orthonormal: H H^T = I).
  at::Tensor dense() const;

 private:
  int64_t n_;
  std::vector<at::Tensor> factors_;
};

// The residual-stream rotation of a model: Q = diag(s) H_hidden with signs s = +-1 drawn from
// `seed` (a randomized Hadamard), FP64 [hidden, hidden], orthonormal.
at::Tensor randomized_hadamard(int64_t n, uint64_t seed);

}  // namespace dmx::quant
