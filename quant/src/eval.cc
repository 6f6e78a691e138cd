// Perplexity over non-overlapping windows of a tokenized text.
#include "dmx/quant/eval.h"

#include <ATen/ATen.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>

#include "dmx/quant/model.h"
#include "dmx/util.h"
#include "dmx/quant/tokenizer.h"

namespace dmx::quant {

PerplexityResult perplexity(const CausalLM& model, const std::vector<int32_t>& tokens,
                            const PerplexityOptions& opt) {
  if (opt.seqlen < 2) throw std::invalid_argument("seqlen must be at least 2");
  if (opt.batch < 1) throw std::invalid_argument("batch must be at least 1");
  if (opt.max_windows < 0) throw std::invalid_argument("max_windows must be >= 0");
  const auto t0 = std::chrono::steady_clock::now();
  PerplexityResult r;
  r.tokens_in_file = static_cast<int64_t>(tokens.size());
  r.windows_available = r.tokens_in_file / opt.seqlen;
  r.windows =
      opt.max_windows > 0 ? std::min(opt.max_windows, r.windows_available) : r.windows_available;
  if (r.windows == 0)
    throw std::invalid_argument("the text has " + std::to_string(tokens.size()) +
                                " tokens, fewer than one window of " + std::to_string(opt.seqlen));
  at::NoGradGuard no_grad;
  at::Tensor all = at::empty({r.windows * opt.seqlen}, at::kLong);
  {
    int64_t* p = all.data_ptr<int64_t>();
    for (int64_t i = 0; i < r.windows * opt.seqlen; ++i) p[i] = tokens[i];
  }
  all = all.view({r.windows, opt.seqlen});
  if (opt.world < 1 || opt.rank < 0 || opt.rank >= opt.world)
    throw std::invalid_argument("rank " + std::to_string(opt.rank) + " of " +
                                std::to_string(opt.world) + " is not a shard");
  if (opt.world > 1 && !opt.allreduce_sum)
    throw std::invalid_argument("a sharded perplexity needs allreduce_sum");
  // NLL sum of every window (FP32 over its T - 1 predictions, as each row of a batch gives it,
  // so the batch size does not change it); this rank fills the windows of its block of batches
  // (batch b: windows [b * batch, (b + 1) * batch)), the others stay 0 until the reduction
  // (adding 0 is exact).
  const int64_t nb = (r.windows + opt.batch - 1) / opt.batch;
  const int64_t b0 = nb * opt.rank / opt.world, b1 = nb * (opt.rank + 1) / opt.world;
  std::vector<double> window_sum(static_cast<size_t>(r.windows), 0.0);
  const int64_t mine = std::min(r.windows, b1 * opt.batch) - std::min(r.windows, b0 * opt.batch);
  for (int64_t b = b0; b < b1; ++b) {
    const int64_t w = b * opt.batch, w1 = std::min(r.windows, w + opt.batch);
    const at::Tensor rows = model.next_token_nll_rows(all.slice(0, w, w1));
    const float* v = rows.data_ptr<float>();
    for (int64_t i = w; i < w1; ++i) window_sum[size_t(i)] = double(v[i - w]);
    if (opt.progress) opt.progress(w1 - b0 * opt.batch, mine);
  }
  if (opt.world > 1) opt.allreduce_sum(window_sum);
  double nll = 0;
  r.window_nll.reserve(window_sum.size());
  for (double v : window_sum) {  // window order, whatever the sharding
    nll += v;
    r.window_nll.push_back(v / double(opt.seqlen - 1));
  }
  r.predicted_tokens = r.windows * (opt.seqlen - 1);
  r.mean_nll = nll / static_cast<double>(r.predicted_tokens);
  r.perplexity = std::exp(r.mean_nll);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

PerplexityResult perplexity_of_file(const CausalLM& model, const Tokenizer& tokenizer,
                                    const std::string& path, const PerplexityOptions& opt) {
  const std::string text = read_regular_file(path, "text file", int64_t(1) << 30);
  std::vector<int32_t> tokens;
  try {
    tokens = tokenizer.encode(text);
  } catch (const std::exception& e) {
    throw std::runtime_error(path + ": " + e.what());
  }
  for (int32_t t : tokens)
    if (t >= model.config().vocab_size)
      throw std::runtime_error(path + ": token id " + std::to_string(t) +
                               " is outside the model's vocabulary (tokenizer and model differ)");
  try {
    return perplexity(model, tokens, opt);
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error(path + ": " + e.what());
  }
}

}  // namespace dmx::quant
