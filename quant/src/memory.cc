// Memory estimates of forward and training passes, checked against the machine before allocating.
#include "dmx/quant/memory.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <stdexcept>

namespace dmx::quant {

int64_t peak_rss_bytes() {
  rusage u{};
  if (::getrusage(RUSAGE_SELF, &u) != 0) return 0;
  return int64_t(u.ru_maxrss) * 1024;  // Linux: kilobytes
}

int64_t machine_memory_bytes() {
  if (const char* mb = std::getenv("DMX_MEMORY_LIMIT_MB")) {
    const long long v = std::atoll(mb);
    if (v > 0) return int64_t(v) << 20;
  }
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGE_SIZE);
  return pages > 0 && page > 0 ? int64_t(pages) * page : int64_t(1) << 62;
}

int64_t estimate_pass_bytes(const ModelConfig& c, int64_t batch, int64_t seqlen, Pass pass) {
  // In double: the inputs are bounded (config limits) but their products may pass int64.
  const double B = double(batch), T = double(seqlen), f = 4.0;
  const double heads = double(c.num_attention_heads);
  const double params = double(parameter_count(c));
  const double hid = double(c.hidden_size), inter = double(c.intermediate_size);
  const double qd = double(c.q_dim()), kvd = double(c.kv_dim());
  // Attention runs kAttentionBlockRows queries at a time against the keys up to the block's end:
  // a forward holds one block's scores ([B, heads, rows, T]); autograd keeps every block's, the
  // causal part of [B, heads, T, T] (about T (T + rows) / 2 per head).
  const double rows = std::min(T, double(kAttentionBlockRows));
  const double scores = B * heads * rows * T * f;
  const double kept_scores = B * heads * T * std::min(T, (T + rows) / 2) * f;
  const double logits = B * T * double(c.vocab_size) * f;
  const double hidden = B * T * (hid + qd + 2 * kvd + 3 * inter) * f;  // one layer's activations
  double bytes = params * f + 3 * scores + 3 * logits + 2 * hidden;
  if (pass == Pass::Forward) return bytes > 9e18 ? int64_t(9e18) : int64_t(bytes);
  // Autograd keeps every layer's activations and attention probabilities.
  bytes += double(c.num_hidden_layers) * (hidden + 2 * kept_scores);
  if (pass == Pass::Backward) {
    // dmx-search's fake quantization (mx_fake_quant_continuous) is differentiable in the format
    // offset, so autograd keeps, per element it quantizes: the element exponent minus the offset's
    // mantissa width (maximum's input), 2^frac and 2^floor of the step (pow2_smooth's product),
    // the step, the rounded value and two where-masks (bytes): 6.5 floats. Per decoder Linear
    // that is its weight (once per step) and its input (per token: q, k and v quantize the same
    // input three times), plus the quantized input the matrix product keeps and the unquantized
    // input the division keeps alive (counted once per distinct input: 4 per layer).
    constexpr double kSavedPerQuantizedElement = 6.5;
    const double linear_inputs = 3 * hid + qd + 2 * hid + inter;  // q k v, o, gate up, down
    const double distinct_inputs = hid + qd + hid + inter;
    const double decoder_weights = hid * (qd + 2 * kvd) + qd * hid + 3 * hid * inter;
    bytes += double(c.num_hidden_layers) *
             (kSavedPerQuantizedElement * decoder_weights +
              B * T * ((kSavedPerQuantizedElement + 1) * linear_inputs + distinct_inputs)) *
             f;
  }
  if (pass == Pass::Train) bytes += 3 * params * f;  // weight gradients and two Adam moments
  return bytes > 9e18 ? int64_t(9e18) : int64_t(bytes);
}

void check_pass_fits(const ModelConfig& c, int64_t batch, int64_t seqlen, Pass pass,
                     const std::string& what) {
  const int64_t need = estimate_pass_bytes(c, batch, seqlen, pass);
  const int64_t have = machine_memory_bytes();
  if (need > have)
    throw std::runtime_error(what + " needs about " + std::to_string(need >> 20) + " MiB (batch " +
                             std::to_string(batch) + " x " + std::to_string(seqlen) +
                             " tokens), more than this machine's " + std::to_string(have >> 20) +
                             " MiB: use shorter or fewer windows");
}

}  // namespace dmx::quant
