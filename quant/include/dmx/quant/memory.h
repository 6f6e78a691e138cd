// Memory a forward (or training) pass of a model needs, estimated from its config before anything
// is allocated, so that an impossible request (a 100,000-token window, a 1e6-wide model) is refused
// with the estimate instead of dying in the allocator with a LibTorch trace.
#pragma once

#include <cstdint>
#include <string>

#include "dmx/quant/config.h"

namespace dmx::quant {

// Peak resident set size of this process so far, in bytes (getrusage ru_maxrss).
int64_t peak_rss_bytes();

// Bytes of memory of this machine (physical pages, or DMX_MEMORY_LIMIT_MB when set).
int64_t machine_memory_bytes();

// What a pass keeps: a forward pass (evaluation), a backward pass through frozen weights
// (dmx-search: every layer's activations kept for autograd), or training (also weight gradients and
// two Adam moments per weight).
enum class Pass { Forward, Backward, Train };

// Query rows per attention block (CausalLM's default, dmx::quant::kDefaultAttentionBlock).
constexpr int64_t kAttentionBlockRows = 256;

// Peak bytes of a pass over `batch` windows of `seqlen` tokens in FP32: the weights, the attention
// scores and probabilities of one query block ([B, heads, rows, T], a few copies), the logits and
// their log-softmax ([B, T, vocab]), and what `pass` keeps besides (for autograd: every layer's
// activations and the causal part of its [B, heads, T, T] probabilities; for dmx-search's
// Backward pass also what its differentiable fake quantization keeps per quantized element).
int64_t estimate_pass_bytes(const ModelConfig& c, int64_t batch, int64_t seqlen, Pass pass);

// Throws std::runtime_error naming `what` and both figures when the estimate exceeds the machine.
void check_pass_fits(const ModelConfig& c, int64_t batch, int64_t seqlen, Pass pass,
                     const std::string& what);

}  // namespace dmx::quant
