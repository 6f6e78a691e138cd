// LibTorch forward pass of the Llama / Qwen3 decoder, checkpoint loading and saving.
#include "dmx/quant/model.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <mutex>

#include "dmx/quant/rotate.h"

namespace dmx::quant {
namespace {

namespace fs = std::filesystem;

constexpr std::array<const char*, 7> kSlotNames = {
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};
enum Slot { Q, K, V, O, GATE, UP, DOWN };

std::string shape_str(at::IntArrayRef s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

// RMSNorm as transformers computes it: in FP32, then weight * x.to(input dtype).
at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& w, double eps) {
  at::Tensor xf = x.to(at::kFloat);
  at::Tensor var = xf.pow(2).mean(-1, /*keepdim=*/true);
  return w * (xf * at::rsqrt(var + eps)).to(x.scalar_type());
}

// HF rotate_half: (x1, x2) -> (-x2, x1) over the two halves of the head dimension.
at::Tensor rotate_half(const at::Tensor& x) {
  const int64_t h = x.size(-1) / 2;
  return at::cat({-x.slice(-1, h), x.slice(-1, 0, h)}, -1);
}

std::optional<at::ScalarType> torch_dtype_of(DType d) {
  switch (d) {
    case DType::BOOL:
      return at::kBool;
    case DType::U8:
      return at::kByte;
    case DType::I8:
      return at::kChar;
    case DType::I16:
      return at::kShort;
    case DType::I32:
      return at::kInt;
    case DType::I64:
      return at::kLong;
    case DType::F16:
      return at::kHalf;
    case DType::BF16:
      return at::kBFloat16;
    case DType::F32:
      return at::kFloat;
    case DType::F64:
      return at::kDouble;
    default:
      return std::nullopt;  // no LibTorch 1.13 dtype: raw bytes
  }
}

// The boolean causal mask of a diagonal tile of n queries x n keys (true above the diagonal:
// query r must not see key c > r), shaped [n, 1, n] to broadcast over the query heads of a kv head.
// Built once per block size and shared; a smaller tile is a view of a larger one's top-left corner.
at::Tensor causal_tile_mask(int64_t n) {
  static std::mutex mu;
  static at::Tensor mask;  // [rows, 1, rows], grown to the largest tile asked for
  std::lock_guard<std::mutex> lock(mu);
  if (!mask.defined() || mask.size(0) < n)
    mask = at::ones({n, n}, at::TensorOptions().dtype(at::kBool)).triu(1).unsqueeze(1);
  return mask.slice(0, 0, n).slice(2, 0, n);
}

std::atomic<int64_t> g_attention_block{kDefaultAttentionBlock};

}  // namespace

void set_attention_block(int64_t rows) {
  if (rows < 1) throw ModelError("attention block must be at least one query row");
  g_attention_block = rows;
}
int64_t attention_block() { return g_attention_block; }

at::Tensor causal_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            int64_t p0, at::ScalarType out_dtype, int64_t block) {
  if (q.dim() != 5 || k.dim() != 4 || v.dim() != 4)
    throw ModelError("causal_attention: q must be [B, kv, T, group, hd] and k, v [B, kv, S, hd]");
  const int64_t B = q.size(0), nkv = q.size(1), T = q.size(2), g = q.size(3), hd = q.size(4);
  const int64_t S = k.size(2);
  if (p0 < 0 || S != p0 + T || v.size(2) != S || k.size(0) != B || k.size(1) != nkv ||
      k.size(3) != hd || v.sizes() != k.sizes())
    throw ModelError("causal_attention: shapes of q " + shape_str(q.sizes()) + ", k " +
                     shape_str(k.sizes()) + ", v " + shape_str(v.sizes()) + " at offset " +
                     std::to_string(p0) + " do not match");
  const double scaling = 1.0 / std::sqrt(static_cast<double>(hd));
  const int64_t rows = block > 0 ? block : attention_block();
  const at::Tensor qc = q.contiguous();  // a block of queries is then a [B, kv, n * g, hd] view
  std::vector<at::Tensor> out;
  out.reserve(static_cast<size_t>((T + rows - 1) / rows));
  for (int64_t t0 = 0; t0 < T; t0 += rows) {
    const int64_t n = std::min(T, t0 + rows) - t0;
    const int64_t keys = p0 + t0 + n;  // keys past the block's last query are all masked: skipped
    const at::Tensor qb = qc.slice(2, t0, t0 + n).view({B, nkv, n * g, hd});
    at::Tensor scores = at::matmul(qb, k.slice(2, 0, keys).transpose(-1, -2)).contiguous();
    scores.mul_(scaling);
    if (n > 1)  // only the diagonal tile (the block's own keys) holds masked entries
      scores.view({B, nkv, n, g, keys})
          .slice(-1, keys - n)
          .masked_fill_(causal_tile_mask(n), -std::numeric_limits<double>::infinity());
    const at::Tensor probs = at::softmax(scores, -1, at::kFloat).to(out_dtype);
    out.push_back(at::matmul(probs, v.slice(2, 0, keys)).view({B, nkv, n, g, hd}));
  }
  return out.size() == 1 ? out[0] : at::cat(out, 2);
}

Linear::Linear(std::string name, at::Tensor w, at::Tensor b)
    : weight(std::move(w)), bias(std::move(b)), name_(std::move(name)) {}

at::Tensor Linear::forward(const at::Tensor& x) { return at::linear(x, weight, bias); }

at::Tensor tensor_from_view(const TensorView& v) {
  std::vector<int64_t> shape = v.shape;
  auto dt = torch_dtype_of(v.dtype);
  if (!dt) {
    const int bits = dtype_bits(v.dtype);
    if (!shape.empty() && (shape.back() * bits) % 8 == 0)
      shape.back() = shape.back() * bits / 8;
    else
      shape = {static_cast<int64_t>(v.nbytes)};
    dt = at::kByte;
  }
  at::Tensor t = at::empty(shape, at::TensorOptions().dtype(*dt));
  if (v.nbytes) std::memcpy(t.data_ptr(), v.data, v.nbytes);  // the mapping may be unaligned
  return t;
}

CausalLM::CausalLM(ModelConfig cfg, std::map<std::string, at::Tensor> w, at::ScalarType dtype)
    : CausalLM(std::move(cfg), std::move(w), {}, dtype) {}

CausalLM::CausalLM(ModelConfig cfg, std::map<std::string, at::Tensor> w,
                   std::map<std::string, LinearPtr> given, at::ScalarType dtype)
    : cfg_(std::move(cfg)), dtype_(dtype) {
  if (dtype != at::kFloat && dtype != at::kBFloat16 && dtype != at::kHalf)
    throw ModelError("model dtype must be float32, bfloat16 or float16");
  auto expected = expected_tensor_shapes(cfg_);
  for (const auto& [name, lin] : given) {
    auto it = expected.find(name + ".weight");
    if (it == expected.end()) throw ModelError("no decoder Linear named \"" + name + "\"");
    if (!lin) throw ModelError("Linear \"" + name + "\" is null");
    if (lin->weight.sizes() != at::IntArrayRef(it->second))
      throw ModelError("Linear \"" + name + "\" has weight shape " +
                       shape_str(lin->weight.sizes()) + " but the config needs " +
                       shape_str(it->second));
    expected.erase(it);
    expected.erase(name + ".bias");
  }
  for (const auto& [name, shape] : expected) {
    auto it = w.find(name);
    if (it == w.end()) throw ModelError("checkpoint lacks tensor \"" + name + "\"");
    if (it->second.sizes() != at::IntArrayRef(shape))
      throw ModelError("tensor \"" + name + "\" has shape " + shape_str(it->second.sizes()) +
                       " but the config needs " + shape_str(shape));
    if (!it->second.is_floating_point())
      throw ModelError("tensor \"" + name + "\" is not a floating-point tensor");
  }
  for (const auto& [name, t] : w) {
    if (expected.count(name)) continue;
    // Tied checkpoints sometimes still store lm_head.weight; old ones store rotary inv_freq.
    if (name == "lm_head.weight" && cfg_.tie_word_embeddings) continue;
    if (name.size() > 24 && name.compare(name.size() - 24, 24, "rotary_emb.inv_freq") == 0)
      continue;
    throw ModelError("checkpoint has an unexpected tensor \"" + name + "\"");
  }
  auto take = [&](const std::string& name) -> at::Tensor {
    return w.at(name).to(dtype_).contiguous();
  };
  embed_ = take("model.embed_tokens.weight");
  final_norm_ = take("model.norm.weight");
  lm_head_ = cfg_.tie_word_embeddings ? embed_ : take("lm_head.weight");
  for (int64_t i = 0; i < cfg_.num_hidden_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    Layer L;
    L.input_norm = take(p + "input_layernorm.weight");
    L.post_norm = take(p + "post_attention_layernorm.weight");
    if (cfg_.arch == Architecture::Qwen3) {
      L.q_norm = take(p + "self_attn.q_norm.weight");
      L.k_norm = take(p + "self_attn.k_norm.weight");
    }
    for (size_t s = 0; s < kSlotNames.size(); ++s) {
      const std::string name = p + kSlotNames[s];
      const bool has_bias = s <= O ? cfg_.attention_bias : cfg_.mlp_bias;
      auto g = given.find(name);
      L.lin[s] = g != given.end()
                     ? g->second
                     : std::make_shared<Linear>(name, take(name + ".weight"),
                                                has_bias ? take(name + ".bias") : at::Tensor());
      linear_index_[name] = {layers_.size(), s};
      linear_names_.push_back(name);
    }
    layers_.push_back(std::move(L));
  }
  std::vector<float> inv = rope_inv_freq(cfg_);
  inv_freq_ = at::empty({static_cast<int64_t>(inv.size())}, at::kFloat);
  std::memcpy(inv_freq_.data_ptr<float>(), inv.data(), inv.size() * sizeof(float));
}

CausalLM CausalLM::load(const std::string& dir, at::ScalarType dtype) {
  ModelConfig cfg = load_config(dir);
  Checkpoint ck(dir);
  std::map<std::string, at::Tensor> w;
  for (const std::string& name : ck.names()) {
    const TensorView& v = ck.at(name);
    if (!torch_dtype_of(v.dtype) || !(v.dtype == DType::BF16 || v.dtype == DType::F16 ||
                                      v.dtype == DType::F32 || v.dtype == DType::F64))
      throw ModelError(dir + ": tensor \"" + name + "\" has dtype " + dtype_name(v.dtype) +
                       "; model weights must be BF16, F16 or F32");
    w[name] = tensor_from_view(v);
  }
  try {
    return CausalLM(std::move(cfg), std::move(w), dtype);
  } catch (const ModelError& e) {
    throw ModelError(dir + ": " + e.what());
  }
}

CausalLM CausalLM::random(const ModelConfig& cfg, uint64_t seed, double std, at::ScalarType dtype) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  std::map<std::string, at::Tensor> w;
  for (const auto& [name, shape] : expected_tensor_shapes(cfg)) {
    at::Tensor t = at::normal(0.0, std, shape, gen, at::TensorOptions().dtype(at::kFloat));
    if (name.find("norm") != std::string::npos) t = t + 1.0;
    w[name] = t;
  }
  return CausalLM(cfg, std::move(w), dtype);
}

at::Tensor CausalLM::rope_cos_sin(int64_t seq, bool want_cos) const {
  // transformers: freqs = inv_freq[None, :] * position[:, None] in FP32; emb = cat(freqs, freqs).
  at::Tensor pos = at::arange(seq, at::TensorOptions().dtype(at::kFloat));
  at::Tensor freqs = pos.unsqueeze(1) * inv_freq_.unsqueeze(0);
  at::Tensor emb = at::cat({freqs, freqs}, -1);
  return (want_cos ? emb.cos() : emb.sin()).to(dtype_);
}

at::Tensor CausalLM::hidden_states(const at::Tensor& ids_in) const {
  return hidden_impl(ids_in, nullptr);
}

at::Tensor CausalLM::forward_cached(const at::Tensor& input_ids, KVCache& cache,
                                    bool last_only) const {
  at::Tensor h = hidden_impl(input_ids, &cache);
  if (last_only) h = h.slice(1, h.size(1) - 1);
  return at::linear(h, lm_head_).to(at::kFloat);
}

at::Tensor CausalLM::hidden_impl(const at::Tensor& ids_in, KVCache* cache) const {
  at::Tensor ids = ids_in.dim() == 1 ? ids_in.unsqueeze(0) : ids_in;
  if (ids.dim() != 2) throw ModelError("input ids must be [batch, seq] or [seq]");
  ids = ids.to(at::kLong);
  const int64_t B = ids.size(0), T = ids.size(1), H = cfg_.hidden_size;
  const int64_t nh = cfg_.num_attention_heads, nkv = cfg_.num_key_value_heads, hd = cfg_.head_dim;
  if (T == 0) throw ModelError("empty input sequence");
  {
    auto mm = at::aminmax(ids);
    if (std::get<0>(mm).item<int64_t>() < 0 || std::get<1>(mm).item<int64_t>() >= cfg_.vocab_size)
      throw ModelError("token id outside the vocabulary");
  }
  const double eps = cfg_.rms_norm_eps;
  const int64_t p0 = cache ? cache->length : 0;  // position of the first new token
  if (cache && p0 > 0 && !cache->k.empty() && cache->k[0].size(0) != B)
    throw ModelError("KV cache batch differs from the input's");
  if (cache && cache->k.empty()) {
    cache->k.resize(layers_.size());
    cache->v.resize(layers_.size());
  }
  const at::Tensor cos = rope_cos_sin(p0 + T, true).slice(0, p0);  // [T, hd]
  const at::Tensor sin = rope_cos_sin(p0 + T, false).slice(0, p0);
  const at::Tensor cos_q = cos.view({T, 1, 1, hd}), sin_q = sin.view({T, 1, 1, hd});
  const at::Tensor cos_k = cos.view({T, 1, hd}), sin_k = sin.view({T, 1, hd});
  const int64_t group = nh / nkv;  // GQA: query head i reads kv head i / group

  at::Tensor h = embed_.index_select(0, ids.reshape({-1})).view({B, T, H});
  for (size_t li = 0; li < layers_.size(); ++li) {
    const Layer& L = layers_[li];
    at::Tensor x = rms_norm(h, L.input_norm, eps);
    at::Tensor q = L.lin[Q]->forward(x).view({B, T, nh, hd});
    at::Tensor k = L.lin[K]->forward(x).view({B, T, nkv, hd});
    at::Tensor v = L.lin[V]->forward(x).view({B, T, nkv, hd});
    if (cfg_.arch == Architecture::Qwen3) {  // per-head RMSNorm before RoPE
      q = rms_norm(q, L.q_norm, eps);
      k = rms_norm(k, L.k_norm, eps);
    }
    // RoPE in the [B, T, heads, hd] layout; then queries grouped by kv head: [B, kv, T, g, hd].
    q = q.view({B, T, nkv, group, hd});
    q = (q * cos_q + rotate_half(q) * sin_q).permute({0, 2, 1, 3, 4}).contiguous();
    k = (k * cos_k + rotate_half(k) * sin_k).transpose(1, 2).contiguous();  // [B, kv, T, hd]
    v = v.transpose(1, 2).contiguous();
    if (cache) {
      if (p0 > 0) {
        k = at::cat({cache->k[li], k}, 2);
        v = at::cat({cache->v[li], v}, 2);
      }
      cache->k[li] = k;
      cache->v[li] = v;
    }
    const at::Tensor attn =
        causal_attention(q, k, v, p0, dtype_).permute({0, 2, 1, 3, 4}).reshape({B, T, nh * hd});
    h = h + L.lin[O]->forward(attn);
    x = rms_norm(h, L.post_norm, eps);
    at::Tensor u = at::silu(L.lin[GATE]->forward(x)) * L.lin[UP]->forward(x);
    if (down_hadamard_) u = down_hadamard_->apply(u);  // rotate_hadamard's online transform
    h = h + L.lin[DOWN]->forward(u);
  }
  if (cache) cache->length = p0 + T;
  return rms_norm(h, final_norm_, eps);
}

at::Tensor CausalLM::forward(const at::Tensor& input_ids) const {
  return at::linear(hidden_states(input_ids), lm_head_).to(at::kFloat);
}

at::Tensor CausalLM::next_token_nll_sum(const at::Tensor& ids_in, int64_t chunk) const {
  at::Tensor ids = (ids_in.dim() == 1 ? ids_in.unsqueeze(0) : ids_in).to(at::kLong);
  const int64_t T = ids.size(1);
  if (T < 2) throw ModelError("next-token loss needs at least 2 tokens");
  at::Tensor h = hidden_states(ids);
  at::Tensor total = at::zeros({}, at::TensorOptions().dtype(at::kFloat));
  for (int64_t c0 = 0; c0 < T - 1; c0 += chunk) {
    const int64_t c1 = std::min(T - 1, c0 + chunk);
    at::Tensor logits = at::linear(h.slice(1, c0, c1), lm_head_).to(at::kFloat);
    at::Tensor target = ids.slice(1, c0 + 1, c1 + 1);
    total = total + at::cross_entropy_loss(logits.reshape({-1, logits.size(-1)}),
                                           target.reshape({-1}), {}, at::Reduction::Sum);
  }
  return total;
}

at::Tensor CausalLM::next_token_nll_rows(const at::Tensor& ids_in, int64_t chunk) const {
  at::Tensor ids = (ids_in.dim() == 1 ? ids_in.unsqueeze(0) : ids_in).to(at::kLong);
  const int64_t B = ids.size(0), T = ids.size(1);
  if (T < 2) throw ModelError("next-token loss needs at least 2 tokens");
  at::Tensor h = hidden_states(ids);
  at::Tensor total = at::zeros({B}, at::TensorOptions().dtype(at::kFloat));
  for (int64_t c0 = 0; c0 < T - 1; c0 += chunk) {
    const int64_t c1 = std::min(T - 1, c0 + chunk);
    at::Tensor logits = at::linear(h.slice(1, c0, c1), lm_head_).to(at::kFloat);
    at::Tensor target = ids.slice(1, c0 + 1, c1 + 1);
    total = total + at::cross_entropy_loss(logits.reshape({-1, logits.size(-1)}),
                                           target.reshape({-1}), {}, at::Reduction::None)
                        .view({B, c1 - c0})
                        .sum(1);
  }
  return total;
}

at::Tensor CausalLM::next_token_loss(const at::Tensor& ids_in, int64_t chunk) const {
  at::Tensor ids = ids_in.dim() == 1 ? ids_in.unsqueeze(0) : ids_in;
  return next_token_nll_sum(ids, chunk) / static_cast<double>(ids.size(0) * (ids.size(1) - 1));
}

LinearPtr CausalLM::linear(const std::string& name) const {
  auto it = linear_index_.find(name);
  if (it == linear_index_.end()) throw ModelError("no decoder Linear named \"" + name + "\"");
  return layers_[it->second.first].lin[it->second.second];
}

void CausalLM::set_linear(const std::string& name, LinearPtr layer) {
  auto it = linear_index_.find(name);
  if (it == linear_index_.end()) throw ModelError("no decoder Linear named \"" + name + "\"");
  if (!layer) throw ModelError("set_linear(\"" + name + "\") with a null layer");
  const LinearPtr& old = layers_[it->second.first].lin[it->second.second];
  if (layer->weight.sizes() != old->weight.sizes())
    throw ModelError("set_linear(\"" + name + "\"): weight shape " +
                     shape_str(layer->weight.sizes()) + " differs from " +
                     shape_str(old->weight.sizes()));
  layers_[it->second.first].lin[it->second.second] = std::move(layer);
}

std::vector<std::pair<std::string, at::Tensor>> CausalLM::named_parameters() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  out.emplace_back("model.embed_tokens.weight", embed_);
  for (size_t i = 0; i < layers_.size(); ++i) {
    const Layer& L = layers_[i];
    const std::string p = "model.layers." + std::to_string(i) + ".";
    out.emplace_back(p + "input_layernorm.weight", L.input_norm);
    out.emplace_back(p + "post_attention_layernorm.weight", L.post_norm);
    if (L.q_norm.defined()) {
      out.emplace_back(p + "self_attn.q_norm.weight", L.q_norm);
      out.emplace_back(p + "self_attn.k_norm.weight", L.k_norm);
    }
    for (size_t s = 0; s < kSlotNames.size(); ++s) {
      out.emplace_back(p + kSlotNames[s] + ".weight", L.lin[s]->weight);
      if (L.lin[s]->bias.defined()) out.emplace_back(p + kSlotNames[s] + ".bias", L.lin[s]->bias);
    }
  }
  out.emplace_back("model.norm.weight", final_norm_);
  if (!cfg_.tie_word_embeddings) out.emplace_back("lm_head.weight", lm_head_);
  return out;
}

void CausalLM::set_requires_grad(bool requires_grad) {
  for (auto& [name, t] : named_parameters()) t.requires_grad_(requires_grad);
}

void CausalLM::save(const std::string& dir, at::ScalarType dtype) const {
  if (rotation_seed_)
    throw ModelError("save: a Hadamard-rotated model cannot be saved as a Hugging Face checkpoint");
  DType file_dtype;
  std::string torch_dtype;
  switch (dtype) {
    case at::kBFloat16:
      file_dtype = DType::BF16, torch_dtype = "bfloat16";
      break;
    case at::kHalf:
      file_dtype = DType::F16, torch_dtype = "float16";
      break;
    case at::kFloat:
      file_dtype = DType::F32, torch_dtype = "float32";
      break;
    default:
      throw ModelError("save: dtype must be bfloat16, float16 or float32");
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (!fs::is_directory(dir)) throw ModelError(dir + ": cannot create the directory");
  std::vector<at::Tensor> keep;
  std::vector<TensorToWrite> tensors;
  for (const auto& [name, t] : named_parameters()) {
    at::Tensor c = t.detach().to(at::kCPU).to(dtype).contiguous();
    keep.push_back(c);
    tensors.push_back({name, file_dtype, c.sizes().vec(), c.data_ptr(), c.nbytes()});
  }
  write_safetensors((fs::path(dir) / "model.safetensors").string(), tensors, {{"format", "pt"}});
  ModelConfig cfg = cfg_;
  cfg.torch_dtype = torch_dtype;
  write_file_atomic((fs::path(dir) / "config.json").string(), config_to_json(cfg));
}

}  // namespace dmx::quant
