// Hadamard matrices (Sylvester and Paley constructions), the Kronecker-factored transform, and the
// folding of a residual-stream rotation into a CausalLM (CausalLM::rotate_hadamard).
#include "dmx/quant/rotate.h"

#include <cmath>
#include <random>
#include <stdexcept>
#include <typeinfo>

#include "dmx/quant/model.h"

namespace dmx::quant {
namespace {

bool is_prime(int64_t q) {
  if (q < 2) return false;
  for (int64_t d = 2; d * d <= q; ++d)
    if (q % d == 0) return false;
  return true;
}

bool is_pow2(int64_t n) { return n >= 1 && (n & (n - 1)) == 0; }

// Legendre symbol of a modulo the prime q: 0, 1 or -1.
int legendre(int64_t a, int64_t q) {
  a %= q;
  if (a < 0) a += q;
  if (a == 0) return 0;
  int64_t r = 1, b = a, e = (q - 1) / 2;
  while (e) {
    if (e & 1) r = r * b % q;
    b = b * b % q;
    e >>= 1;
  }
  return r == 1 ? 1 : -1;
}

// The Paley prime q and construction (1: order q + 1, q = 3 mod 4; 2: order 2 (q + 1),
// q = 1 mod 4) of `order`, or q = 0 when there is none.
std::pair<int64_t, int> paley_of(int64_t order) {
  if (order % 4 != 0 || order < 12) return {0, 0};
  const int64_t q1 = order - 1;
  if (q1 % 4 == 3 && is_prime(q1)) return {q1, 1};
  if (order % 2 == 0) {
    const int64_t q2 = order / 2 - 1;
    if (q2 % 4 == 1 && is_prime(q2)) return {q2, 2};
  }
  return {0, 0};
}

at::Tensor sylvester(int64_t n) {  // n a power of two
  at::Tensor h = at::ones({1, 1}, at::kDouble);
  while (h.size(0) < n) h = at::cat({at::cat({h, h}, 1), at::cat({h, -h}, 1)}, 0);
  return h;
}

at::Tensor paley(int64_t q, int kind) {
  // Jacobsthal matrix Q[i][j] = chi(j - i).
  at::Tensor Q = at::empty({q, q}, at::kDouble);
  auto a = Q.accessor<double, 2>();
  for (int64_t i = 0; i < q; ++i)
    for (int64_t j = 0; j < q; ++j) a[i][j] = legendre(j - i, q);
  at::Tensor ones = at::ones({q, 1}, at::kDouble);
  if (kind == 1) {  // H = I + [[0, 1^T], [-1, Q]] (Q antisymmetric)
    at::Tensor S = at::cat(
        {at::cat({at::zeros({1, 1}, at::kDouble), ones.t()}, 1), at::cat({-ones, Q}, 1)}, 0);
    return S + at::eye(q + 1, at::kDouble);
  }
  // kind 2: C = [[0, 1^T], [1, Q]] (Q symmetric); H = C kron [[1, 1], [1, -1]] +
  // I kron [[1, -1], [-1, -1]].
  at::Tensor C =
      at::cat({at::cat({at::zeros({1, 1}, at::kDouble), ones.t()}, 1), at::cat({ones, Q}, 1)}, 0);
  at::Tensor A = at::tensor({1.0, 1.0, 1.0, -1.0}, at::kDouble).view({2, 2});
  at::Tensor B = at::tensor({1.0, -1.0, -1.0, -1.0}, at::kDouble).view({2, 2});
  return at::kron(C, A) + at::kron(at::eye(q + 1, at::kDouble), B);
}

// The odd-part factor m (1 or a Paley order) with n = m * 2^k, the smallest that works.
int64_t paley_part(int64_t n) {
  if (is_pow2(n)) return 1;
  for (int64_t m = 12; m <= n; m += 4) {
    if (n % m != 0 || !is_pow2(n / m)) continue;
    if (paley_of(m).first != 0) return m;
  }
  return 0;
}

}  // namespace

at::Tensor hadamard_pm1(int64_t order) {
  if (order >= 1 && is_pow2(order)) return sylvester(order);
  const auto [q, kind] = paley_of(order);
  if (q == 0) return at::Tensor();
  return paley(q, kind);
}

bool HadamardTransform::supported(int64_t n) { return n >= 1 && paley_part(n) != 0; }

HadamardTransform::HadamardTransform(int64_t n) : n_(n) {
  const int64_t m = n >= 1 ? paley_part(n) : 0;
  if (m == 0)
    throw std::invalid_argument(
        "no Hadamard construction of order " + std::to_string(n) +
        " (supported: 2^k times 1 or a Paley order q + 1, 2 (q + 1) for a prime q, e.g. 12, 20, "
        "28, 36, 44)");
  if (m > 1) factors_.push_back(hadamard_pm1(m).to(at::kFloat));
  int64_t rest = n / m;
  while (rest > 1) {  // Sylvester factors of at most 64
    const int64_t f = std::min<int64_t>(rest, 64);
    factors_.push_back(sylvester(f).to(at::kFloat));
    rest /= f;
  }
}

at::Tensor HadamardTransform::apply(const at::Tensor& x) const {
  if (x.size(-1) != n_)
    throw std::invalid_argument("Hadamard transform of order " + std::to_string(n_) +
                                " applied to a last dimension of " + std::to_string(x.size(-1)));
  const auto lead = x.sizes().slice(0, x.dim() - 1).vec();
  std::vector<int64_t> shape = lead;
  for (const at::Tensor& f : factors_) shape.push_back(f.size(0));
  at::Tensor y = x.to(at::kFloat).reshape(shape);
  const int64_t base = int64_t(lead.size());
  for (size_t t = 0; t < factors_.size(); ++t) {
    // Contract axis base + t with the factor's rows, keep the axis in place.
    y = at::matmul(y.movedim(base + int64_t(t), -1), factors_[t]).movedim(-1, base + int64_t(t));
  }
  y = y.reshape(x.sizes()) * (1.0 / std::sqrt(double(n_)));
  return y.to(x.scalar_type());
}

at::Tensor HadamardTransform::dense() const {
  at::Tensor h = at::ones({1, 1}, at::kDouble);
  for (const at::Tensor& f : factors_) h = at::kron(h, f.to(at::kDouble));
  return h / std::sqrt(double(n_));
}

at::Tensor randomized_hadamard(int64_t n, uint64_t seed) {
  const at::Tensor h = HadamardTransform(n).dense();
  std::mt19937_64 rng(seed);
  at::Tensor s = at::empty({n, 1}, at::kDouble);
  auto a = s.accessor<double, 2>();
  for (int64_t i = 0; i < n; ++i) a[i][0] = (rng() >> 63) ? 1.0 : -1.0;
  return s * h;  // diag(s) H
}

// ---- CausalLM::rotate_hadamard
// -------------------------------------------------------------------
namespace {
enum Slot : int { kQ, kK, kV, kO, kGate, kUp, kDown };  // CausalLM::Layer::lin order
}  // namespace

void CausalLM::rotate_hadamard(uint64_t seed) {
  if (rotation_seed_) throw ModelError("the model is already rotated");
  for (const Layer& L : layers_)
    for (const LinearPtr& l : L.lin)
      if (typeid(*l) != typeid(Linear))
        throw ModelError("rotate_hadamard needs plain FP32/BF16 Linears (rotate before wrapping)");
  if (!HadamardTransform::supported(cfg_.hidden_size) ||
      !HadamardTransform::supported(cfg_.intermediate_size))
    throw ModelError(
        "--rotate hadamard: " +
        std::string(!HadamardTransform::supported(cfg_.hidden_size)
                        ? "hidden_size " + std::to_string(cfg_.hidden_size)
                        : "intermediate_size " + std::to_string(cfg_.intermediate_size)) +
        " has no Hadamard construction (2^k times 1 or a Paley order)");
  at::NoGradGuard no_grad;
  const at::Tensor Q = randomized_hadamard(cfg_.hidden_size, seed);  // [H, H] FP64
  auto down = std::make_shared<HadamardTransform>(cfg_.intermediate_size);
  const at::Tensor Hd = down->dense();
  auto to_model = [&](const at::Tensor& t) { return t.to(dtype_).contiguous(); };
  // Readers of the residual stream: W <- W diag(norm) Q (the norm's scale folded first, so the
  // norm left behind, x / rms(x), commutes with the rotation: rms(x Q) = rms(x)).
  auto fold_reader = [&](const LinearPtr& l, const at::Tensor& norm) {
    l->weight = to_model(at::matmul(l->weight.to(at::kDouble) * norm.to(at::kDouble), Q));
  };
  // Writers: y Q, so W <- Q^T W and b <- b Q.
  auto fold_writer = [&](const LinearPtr& l) {
    l->weight = to_model(at::matmul(Q.t(), l->weight.to(at::kDouble)));
    if (l->bias.defined()) l->bias = to_model(at::matmul(l->bias.to(at::kDouble), Q));
  };
  for (Layer& L : layers_) {
    for (int s : {kQ, kK, kV}) fold_reader(L.lin[s], L.input_norm);
    for (int s : {kGate, kUp}) fold_reader(L.lin[s], L.post_norm);
    fold_writer(L.lin[kO]);
    fold_writer(L.lin[kDown]);
    // The online transform before down_proj: u -> u H, so W_down <- W_down H.
    L.lin[kDown]->weight = to_model(at::matmul(L.lin[kDown]->weight.to(at::kDouble), Hd));
    L.input_norm = at::ones_like(L.input_norm);
    L.post_norm = at::ones_like(L.post_norm);
  }
  lm_head_ = to_model(at::matmul(lm_head_.to(at::kDouble) * final_norm_.to(at::kDouble), Q));
  final_norm_ = at::ones_like(final_norm_);
  embed_ = to_model(at::matmul(embed_.to(at::kDouble), Q));
  cfg_.tie_word_embeddings = false;  // the embedding and the head are rotated differently
  down_hadamard_ = std::move(down);
  rotation_seed_ = seed;
}

}  // namespace dmx::quant
