// Perplexity of a raw text file in the WikiText-2 raw layout: the whole file tokenized once, cut
// into non-overlapping windows of `seqlen` tokens (a trailing partial window is dropped), each
// window scored on its seqlen - 1 next-token predictions; perplexity = exp(mean token NLL).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace dmx::quant {

class CausalLM;
class Tokenizer;

struct PerplexityOptions {
  int64_t seqlen = 2048;
  int64_t max_windows = 0;  // 0: all windows
  int64_t batch = 1;        // windows per forward pass
  // Called after each batch with (windows done, windows total) of this process's share.
  std::function<void(int64_t, int64_t)> progress;
  // Sharded over `world` processes (dmx/dist.h): this one evaluates rank `rank`'s contiguous block
  // of whole batches (the batches a single process forms, so each batch's NLL sum is the same
  // numbers), and `allreduce_sum` (required when world > 1) adds the per-window vectors of every
  // rank, each zero outside its block. The sum over the windows then runs in window order on the
  // gathered values, exactly as in one process: the perplexity is bit-equal to world = 1.
  int rank = 0, world = 1;
  std::function<void(std::vector<double>&)> allreduce_sum;
};

struct PerplexityResult {
  double perplexity = 0;
  double mean_nll = 0;         // nats per predicted token
  int64_t tokens_in_file = 0;  // tokens of the whole text
  int64_t windows = 0;         // windows evaluated
  int64_t windows_available = 0;
  int64_t predicted_tokens = 0;  // windows * (seqlen - 1)
  std::vector<double> window_nll;  // mean NLL of each window, in window order (all ranks)
  double seconds = 0;
};

// Perplexity of `tokens` (already tokenized) under `model`, without gradients.
PerplexityResult perplexity(const CausalLM& model, const std::vector<int32_t>& tokens,
                            const PerplexityOptions& opt);

// Reads the file whole, tokenizes it once, and evaluates; errors name the file.
PerplexityResult perplexity_of_file(const CausalLM& model, const Tokenizer& tokenizer,
                                    const std::string& path, const PerplexityOptions& opt);

}  // namespace dmx::quant
