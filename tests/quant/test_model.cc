// The LibTorch model against a second, plain-loop implementation (double precision, written here
// from the transformers formulas) on small random checkpoints of each architecture that this test
// writes itself; save/load round trips; Linear replacement; autograd; perplexity; the dmx-eval CLI.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "dmx/quant/config.h"
#include "dmx/quant/eval.h"
#include "dmx/quant/model.h"
#include "dmx/quant/safetensors.h"
#include "dmx/quant/tokenizer.h"

namespace fs = std::filesystem;
using namespace dmx::quant;
using json = nlohmann::json;
using Weights = std::map<std::string, std::vector<float>>;

namespace {

fs::path temp_dir(const std::string& name) {
  fs::path d =
      fs::temp_directory_path() / ("dmx_quant_model_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// Random weights for every tensor the config needs (norm weights near 1).
Weights random_weights(const ModelConfig& c, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  Weights w;
  for (const auto& [name, shape] : expected_tensor_shapes(c)) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    const bool norm = name.find("norm") != std::string::npos;
    const float scale = norm ? 0.2f
                             : (name.find("bias") != std::string::npos
                                    ? 0.1f
                                    : 1.0f / std::sqrt(static_cast<float>(shape.back())));
    std::vector<float> v(n);
    for (float& x : v) x = (norm ? 1.0f : 0.0f) + scale * nd(rng);
    w[name] = std::move(v);
  }
  return w;
}

// Writes config.json (by hand, as HF would) and model.safetensors (F32).
void write_checkpoint(const fs::path& dir, const json& config, const ModelConfig& c,
                      const Weights& w) {
  fs::create_directories(dir);
  std::ofstream(dir / "config.json") << config.dump(2);
  std::vector<TensorToWrite> ts;
  const auto shapes = expected_tensor_shapes(c);
  for (const auto& [name, v] : w)
    ts.push_back({name, DType::F32, shapes.at(name), v.data(), v.size() * 4});
  write_safetensors((dir / "model.safetensors").string(), ts, {{"format", "pt"}});
}

// ---- The reference: plain loops in double --------------------------------------------------
struct Reference {
  const ModelConfig& c;
  const Weights& w;

  const std::vector<float>& W(const std::string& n) const { return w.at(n); }
  bool has(const std::string& n) const { return w.count(n) > 0; }

  std::vector<double> linear(const std::string& name, const std::vector<double>& x) const {
    const auto& m = W(name + ".weight");
    const size_t in = x.size(), out = m.size() / in;
    std::vector<double> y(out, 0.0);
    for (size_t o = 0; o < out; ++o) {
      double s = has(name + ".bias") ? W(name + ".bias")[o] : 0.0;
      for (size_t i = 0; i < in; ++i) s += static_cast<double>(m[o * in + i]) * x[i];
      y[o] = s;
    }
    return y;
  }
  std::vector<double> rmsnorm(const std::vector<double>& x, const std::vector<float>& g, size_t off,
                              size_t n) const {
    double ss = 0;
    for (size_t i = 0; i < n; ++i) ss += x[off + i] * x[off + i];
    const double r = 1.0 / std::sqrt(ss / n + c.rms_norm_eps);
    std::vector<double> y(n);
    for (size_t i = 0; i < n; ++i) y[i] = x[off + i] * r * g[i];
    return y;
  }
  std::vector<double> inv_freq() const {
    const int64_t d = c.head_dim;
    std::vector<double> f(d / 2);
    const double pi = std::acos(-1.0);
    for (int64_t i = 0; i < d / 2; ++i) {
      double base = 1.0 / std::pow(c.rope_theta, 2.0 * i / d);
      if (c.rope_scaling.type == "llama3") {
        const auto& r = c.rope_scaling;
        double old_ctx = static_cast<double>(r.original_max_position_embeddings);
        double wl = 2 * pi / base;
        if (wl < old_ctx / r.high_freq_factor) {
        } else if (wl > old_ctx / r.low_freq_factor) {
          base /= r.factor;
        } else {
          double s = (old_ctx / wl - r.low_freq_factor) / (r.high_freq_factor - r.low_freq_factor);
          base = (1 - s) * base / r.factor + s * base;
        }
      }
      f[i] = base;
    }
    return f;
  }
  // logits[t][v]
  std::vector<std::vector<double>> logits(const std::vector<int>& ids) const {
    const size_t T = ids.size(), H = c.hidden_size, hd = c.head_dim, nh = c.num_attention_heads,
                 nkv = c.num_key_value_heads;
    const auto& emb = W("model.embed_tokens.weight");
    std::vector<std::vector<double>> h(T, std::vector<double>(H));
    for (size_t t = 0; t < T; ++t)
      for (size_t i = 0; i < H; ++i) h[t][i] = emb[ids[t] * H + i];
    const auto freq = inv_freq();
    auto rope = [&](std::vector<double>& v, size_t off, size_t pos) {
      for (size_t i = 0; i < hd / 2; ++i) {
        const double a = static_cast<double>(pos) * freq[i], cs = std::cos(a), sn = std::sin(a);
        const double x1 = v[off + i], x2 = v[off + i + hd / 2];
        v[off + i] = x1 * cs - x2 * sn;
        v[off + i + hd / 2] = x2 * cs + x1 * sn;
      }
    };
    for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
      const std::string p = "model.layers." + std::to_string(l) + ".";
      std::vector<std::vector<double>> q(T), k(T), v(T);
      for (size_t t = 0; t < T; ++t) {
        auto x = rmsnorm(h[t], W(p + "input_layernorm.weight"), 0, H);
        q[t] = linear(p + "self_attn.q_proj", x);
        k[t] = linear(p + "self_attn.k_proj", x);
        v[t] = linear(p + "self_attn.v_proj", x);
        if (c.arch == Architecture::Qwen3) {
          for (size_t hh = 0; hh < nh; ++hh) {
            auto y = rmsnorm(q[t], W(p + "self_attn.q_norm.weight"), hh * hd, hd);
            std::copy(y.begin(), y.end(), q[t].begin() + hh * hd);
          }
          for (size_t hh = 0; hh < nkv; ++hh) {
            auto y = rmsnorm(k[t], W(p + "self_attn.k_norm.weight"), hh * hd, hd);
            std::copy(y.begin(), y.end(), k[t].begin() + hh * hd);
          }
        }
        for (size_t hh = 0; hh < nh; ++hh) rope(q[t], hh * hd, t);
        for (size_t hh = 0; hh < nkv; ++hh) rope(k[t], hh * hd, t);
      }
      for (size_t t = 0; t < T; ++t) {
        std::vector<double> attn(nh * hd, 0.0);
        for (size_t hh = 0; hh < nh; ++hh) {
          const size_t kh = hh / (nh / nkv);
          std::vector<double> s(t + 1);
          double mx = -1e300;
          for (size_t u = 0; u <= t; ++u) {
            double d = 0;
            for (size_t i = 0; i < hd; ++i) d += q[t][hh * hd + i] * k[u][kh * hd + i];
            s[u] = d / std::sqrt(static_cast<double>(hd));
            mx = std::max(mx, s[u]);
          }
          double z = 0;
          for (double& e : s) z += (e = std::exp(e - mx));
          for (size_t u = 0; u <= t; ++u)
            for (size_t i = 0; i < hd; ++i) attn[hh * hd + i] += s[u] / z * v[u][kh * hd + i];
        }
        auto o = linear(p + "self_attn.o_proj", attn);
        for (size_t i = 0; i < H; ++i) h[t][i] += o[i];
        auto x = rmsnorm(h[t], W(p + "post_attention_layernorm.weight"), 0, H);
        auto g = linear(p + "mlp.gate_proj", x), up = linear(p + "mlp.up_proj", x);
        for (size_t i = 0; i < g.size(); ++i) g[i] = g[i] / (1 + std::exp(-g[i])) * up[i];
        auto dn = linear(p + "mlp.down_proj", g);
        for (size_t i = 0; i < H; ++i) h[t][i] += dn[i];
      }
    }
    const auto& head = c.tie_word_embeddings ? emb : W("lm_head.weight");
    std::vector<std::vector<double>> out(T, std::vector<double>(c.vocab_size));
    for (size_t t = 0; t < T; ++t) {
      auto x = rmsnorm(h[t], W("model.norm.weight"), 0, H);
      for (int64_t vv = 0; vv < c.vocab_size; ++vv) {
        double s = 0;
        for (size_t i = 0; i < H; ++i) s += static_cast<double>(head[vv * H + i]) * x[i];
        out[t][vv] = s;
      }
    }
    return out;
  }
};

struct Case {
  std::string name;
  json config;
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

std::vector<Case> cases() {
  json llama = {{"architectures", {"LlamaForCausalLM"}},
                {"model_type", "llama"},
                {"hidden_size", 64},
                {"intermediate_size", 96},
                {"num_hidden_layers", 2},
                {"num_attention_heads", 4},
                {"num_key_value_heads", 2},
                {"vocab_size", 101},
                {"rms_norm_eps", 1e-5},
                {"rope_theta", 10000.0},
                {"tie_word_embeddings", true},
                {"attention_bias", true},
                {"mlp_bias", true},
                {"bos_token_id", 1},
                {"eos_token_id", {2, 3}},
                {"rope_scaling",
                 {{"rope_type", "llama3"},
                  {"factor", 8.0},
                  {"low_freq_factor", 1.0},
                  {"high_freq_factor", 4.0},
                  {"original_max_position_embeddings", 64}}}};
  json smollm = {{"architectures", {"LlamaForCausalLM"}},
                 {"model_type", "llama"},
                 {"hidden_size", 48},
                 {"intermediate_size", 80},
                 {"num_hidden_layers", 3},
                 {"num_attention_heads", 3},
                 {"num_key_value_heads", 1},
                 {"vocab_size", 77},
                 {"rms_norm_eps", 1e-5},
                 {"rope_theta", 100000},
                 {"rope_scaling", nullptr},
                 {"tie_word_embeddings", false}};
  json qwen3 = {{"architectures", {"Qwen3ForCausalLM"}},
                {"model_type", "qwen3"},
                {"hidden_size", 48},
                {"intermediate_size", 64},
                {"num_hidden_layers", 2},
                {"num_attention_heads", 4},
                {"num_key_value_heads", 2},
                {"head_dim", 24},
                {"vocab_size", 90},
                {"rms_norm_eps", 1e-6},
                {"rope_theta", 1000000},
                {"tie_word_embeddings", true},
                {"attention_bias", false},
                {"use_sliding_window", false},
                {"sliding_window", nullptr}};
  return {{"llama3_gqa_bias", llama}, {"smollm2_mqa_untied", smollm}, {"qwen3_headdim", qwen3}};
}

std::vector<int> token_ids(int n, int vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int> ids(n);
  for (int& x : ids) x = static_cast<int>(rng() % vocab);
  return ids;
}

at::Tensor to_tensor(const std::vector<std::vector<int>>& rows) {
  at::Tensor t = at::empty(
      {static_cast<int64_t>(rows.size()), static_cast<int64_t>(rows[0].size())}, at::kLong);
  for (size_t b = 0; b < rows.size(); ++b)
    for (size_t i = 0; i < rows[b].size(); ++i) t[b][i] = rows[b][i];
  return t;
}

class ModelVsReference : public ::testing::TestWithParam<Case> {};

}  // namespace

TEST_P(ModelVsReference, LogitsMatchPlainLoopsInFp32) {
  at::set_num_threads(1);
  const Case& cs = GetParam();
  const ModelConfig c = parse_config(cs.config.dump(), cs.name);
  const uint32_t seed = 1234 + static_cast<uint32_t>(cs.name.size());
  const Weights w = random_weights(c, seed);
  const fs::path dir = temp_dir(cs.name);
  write_checkpoint(dir, cs.config, c, w);
  CausalLM model = CausalLM::load(dir.string());
  EXPECT_EQ(model.linear_names().size(), static_cast<size_t>(7 * c.num_hidden_layers));

  const int T = 11;
  std::vector<int> ids0 = token_ids(T, static_cast<int>(c.vocab_size), seed),
                   ids1 = token_ids(T, static_cast<int>(c.vocab_size), seed + 1);
  at::Tensor logits = model.forward(to_tensor({ids0, ids1}));
  ASSERT_EQ(logits.sizes(), at::IntArrayRef({2, T, c.vocab_size}));
  Reference ref{c, w};
  double max_err = 0, max_abs = 0;
  for (int b = 0; b < 2; ++b) {
    auto r = ref.logits(b == 0 ? ids0 : ids1);
    auto acc = logits[b];
    for (int t = 0; t < T; ++t)
      for (int64_t v = 0; v < c.vocab_size; ++v) {
        max_err = std::max(max_err, std::abs(acc[t][v].item<double>() - r[t][v]));
        max_abs = std::max(max_abs, std::abs(r[t][v]));
      }
  }
  EXPECT_LT(max_err, 2e-5 * std::max(1.0, max_abs))
      << cs.name << " seed " << seed << " max |logit| " << max_abs;
  EXPECT_GT(max_abs, 0.5) << "degenerate logits";

  // The loss is the mean next-token cross entropy of those logits.
  double nll = 0;
  auto r0 = ref.logits(ids0);
  for (int t = 0; t + 1 < T; ++t) {
    double mx = *std::max_element(r0[t].begin(), r0[t].end()), z = 0;
    for (double x : r0[t]) z += std::exp(x - mx);
    nll += (std::log(z) + mx) - r0[t][ids0[t + 1]];
  }
  at::Tensor loss = model.next_token_loss(to_tensor({ids0}), /*chunk=*/4);
  EXPECT_NEAR(loss.item<double>(), nll / (T - 1), 1e-5) << cs.name;
  fs::remove_all(dir);
}

// Windows longer than an attention block (several query blocks, the last one partial) against
// the plain loops, and the KV-cache path with a prefix spanning blocks against forward().
TEST_P(ModelVsReference, LongWindowsInAttentionBlocksMatchPlainLoops) {
  at::set_num_threads(1);
  const Case& cs = GetParam();
  const ModelConfig c = parse_config(cs.config.dump(), cs.name);
  const uint32_t seed = 4321 + static_cast<uint32_t>(cs.name.size());
  const Weights w = random_weights(c, seed);
  const fs::path dir = temp_dir(cs.name + "_long");
  write_checkpoint(dir, cs.config, c, w);
  const CausalLM model = CausalLM::load(dir.string());
  const int T = 300;
  const std::vector<int> ids = token_ids(T, static_cast<int>(c.vocab_size), seed);
  const auto r = Reference{c, w}.logits(ids);
  const int64_t saved_block = attention_block();
  for (int64_t block : {kDefaultAttentionBlock, int64_t{64}, int64_t{300}}) {
    set_attention_block(block);
    const at::Tensor logits = model.forward(to_tensor({ids}))[0];
    double max_err = 0, max_abs = 0;
    auto acc = logits.accessor<float, 2>();
    for (int t = 0; t < T; ++t)
      for (int64_t v = 0; v < c.vocab_size; ++v) {
        max_err = std::max(max_err, std::abs(acc[t][v] - r[t][v]));
        max_abs = std::max(max_abs, std::abs(r[t][v]));
      }
    EXPECT_LT(max_err, 2e-5 * std::max(1.0, max_abs))
        << cs.name << " seed " << seed << " block " << block;
  }
  // Cached: a 130-token prefix, then 129 tokens (blocks of 64 at offset 130), then one token.
  set_attention_block(64);
  const at::Tensor ids_t = to_tensor({ids});
  const at::Tensor full = model.forward(ids_t.slice(1, 0, 260));
  CausalLM::KVCache cache;
  const at::Tensor a = model.forward_cached(ids_t.slice(1, 0, 130), cache, false);
  const at::Tensor b = model.forward_cached(ids_t.slice(1, 130, 259), cache, false);
  const at::Tensor d = model.forward_cached(ids_t.slice(1, 259, 260), cache, true);
  set_attention_block(saved_block);
  EXPECT_EQ(cache.length, 260);
  const double scale = std::max(1.0, full.abs().max().item<double>());
  EXPECT_LT((a - full.slice(1, 0, 130)).abs().max().item<double>(), 2e-5 * scale) << cs.name;
  EXPECT_LT((b - full.slice(1, 130, 259)).abs().max().item<double>(), 2e-5 * scale) << cs.name;
  EXPECT_LT((d - full.slice(1, 259, 260)).abs().max().item<double>(), 2e-5 * scale) << cs.name;
  fs::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(Architectures, ModelVsReference, ::testing::ValuesIn(cases()),
                         [](const auto& info) { return info.param.name; });

TEST(Model, SaveLoadRoundTripF32Bf16AndShards) {
  at::set_num_threads(1);
  const Case cs = cases()[2];
  const ModelConfig c = parse_config(cs.config.dump(), cs.name);
  CausalLM m = CausalLM::random(c, 7, 0.05);
  const fs::path d = temp_dir("save");
  m.save((d / "f32").string(), at::kFloat);
  m.save((d / "bf16").string(), at::kBFloat16);
  CausalLM f32 = CausalLM::load((d / "f32").string());
  CausalLM bf16 = CausalLM::load((d / "bf16").string());
  EXPECT_EQ(load_config((d / "bf16").string()).torch_dtype, "bfloat16");
  auto pa = m.named_parameters(), pb = f32.named_parameters(), pc = bf16.named_parameters();
  ASSERT_EQ(pa.size(), pb.size());
  ASSERT_EQ(pa.size(), pc.size());
  for (size_t i = 0; i < pa.size(); ++i) {
    EXPECT_EQ(pa[i].first, pb[i].first);
    EXPECT_TRUE(at::equal(pa[i].second, pb[i].second)) << pa[i].first;
    EXPECT_TRUE(at::equal(pa[i].second.to(at::kBFloat16).to(at::kFloat), pc[i].second))
        << pa[i].first;
  }
  at::Tensor ids = at::arange(9, at::kLong).unsqueeze(0) * 7 % c.vocab_size;
  EXPECT_TRUE(at::equal(m.forward(ids), f32.forward(ids)));

  // Re-shard the F32 checkpoint into two files with an index; same model.
  const fs::path sh = d / "sharded";
  fs::create_directories(sh);
  fs::copy_file(d / "f32" / "config.json", sh / "config.json");
  Checkpoint ck((d / "f32").string());
  std::vector<TensorToWrite> s1, s2;
  json map;
  int i = 0;
  for (const auto& n : ck.names()) {
    const TensorView& v = ck.at(n);
    const bool first = i++ % 2 == 0;
    (first ? s1 : s2).push_back({n, v.dtype, v.shape, v.data, v.nbytes});
    map[n] = first ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
  }
  write_safetensors((sh / "model-00001-of-00002.safetensors").string(), s1);
  write_safetensors((sh / "model-00002-of-00002.safetensors").string(), s2);
  write_file_atomic((sh / "model.safetensors.index.json").string(),
                    json{{"weight_map", map}}.dump());
  CausalLM from_shards = CausalLM::load(sh.string());
  EXPECT_TRUE(at::equal(m.forward(ids), from_shards.forward(ids)));
  fs::remove_all(d);
}

TEST(Model, LoadErrorsNameTheProblem) {
  const Case cs = cases()[0];
  const ModelConfig c = parse_config(cs.config.dump(), cs.name);
  Weights w = random_weights(c, 3);
  const fs::path d = temp_dir("errs");
  auto expect_error = [&](const Weights& ww, const std::string& what) {
    fs::remove_all(d);
    write_checkpoint(d, cs.config, c, ww);
    try {
      CausalLM::load(d.string());
      ADD_FAILURE() << "loaded; expected " << what;
    } catch (const ModelError& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  Weights missing = w;
  missing.erase("model.layers.1.mlp.up_proj.bias");
  expect_error(missing, "lacks tensor \"model.layers.1.mlp.up_proj.bias\"");
  Weights extra = w;
  extra["model.layers.9.foo"] = {1.0f};
  try {  // write_checkpoint needs a shape for the extra tensor: write it by hand
    fs::remove_all(d);
    fs::create_directories(d);
    std::ofstream(d / "config.json") << cs.config.dump();
    std::vector<TensorToWrite> ts;
    auto shapes = expected_tensor_shapes(c);
    shapes["model.layers.9.foo"] = {1};
    for (const auto& [n, v] : extra)
      ts.push_back({n, DType::F32, shapes.at(n), v.data(), v.size() * 4});
    write_safetensors((d / "model.safetensors").string(), ts);
    CausalLM::load(d.string());
    ADD_FAILURE() << "loaded an unexpected tensor";
  } catch (const ModelError& e) {
    EXPECT_NE(std::string(e.what()).find("unexpected tensor \"model.layers.9.foo\""),
              std::string::npos)
        << e.what();
  }
  json bad = cs.config;
  bad["intermediate_size"] = 97;  // checkpoint shapes no longer match
  fs::remove_all(d);
  write_checkpoint(d, cs.config, c, w);
  std::ofstream(d / "config.json") << bad.dump();
  try {
    CausalLM::load(d.string());
    ADD_FAILURE();
  } catch (const ModelError& e) {
    EXPECT_NE(std::string(e.what()).find("has shape [64, 96] but the config needs [64, 97]"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(CausalLM::load((d / "nope").string()), ConfigError);
  fs::remove_all(d);
}

// A Linear subclass that records calls and scales the base output: what quantizers will do.
struct ScaledLinear : Linear {
  ScaledLinear(const Linear& base, double s) : Linear(base), scale(s) {}
  at::Tensor forward(const at::Tensor& x) override {
    ++calls;
    return Linear::forward(x) * scale;
  }
  double scale;
  int calls = 0;
};

TEST(Model, DecoderLinearsAreReachableAndReplaceable) {
  at::set_num_threads(1);
  const ModelConfig c = parse_config(cases()[1].config.dump(), "m");
  CausalLM m = CausalLM::random(c, 11, 0.1);
  EXPECT_EQ(m.linear_names(), decoder_linear_names(c));
  at::Tensor ids = at::arange(6, at::kLong).unsqueeze(0);
  at::Tensor base = m.forward(ids);
  const std::string name = "model.layers.1.mlp.down_proj";
  LinearPtr orig = m.linear(name);
  EXPECT_EQ(orig->name(), name);
  auto same = std::make_shared<ScaledLinear>(*orig, 1.0);
  m.set_linear(name, same);
  EXPECT_TRUE(at::equal(m.forward(ids), base));
  EXPECT_EQ(same->calls, 1);
  m.set_linear(name, std::make_shared<ScaledLinear>(*orig, 0.0));
  at::Tensor changed = m.forward(ids);
  EXPECT_GT((changed - base).abs().max().item<double>(), 1e-4);
  // Zeroing down_proj of the last layer equals removing its MLP residual: check one position by
  // hand.
  m.set_linear(name, orig);
  EXPECT_TRUE(at::equal(m.forward(ids), base));
  EXPECT_THROW(m.linear("model.layers.1.mlp.fc"), ModelError);
  EXPECT_THROW(m.set_linear("model.layers.0.self_attn.q_proj",
                            std::make_shared<Linear>("x", at::zeros({3, 3}))),
               ModelError);
}

TEST(Model, AutogradThroughForwardMatchesFiniteDifferences) {
  at::set_num_threads(1);
  const ModelConfig c = parse_config(cases()[2].config.dump(), "q");
  CausalLM m = CausalLM::random(c, 5, 0.1, at::kFloat);
  // Work in double for a sharp finite-difference check: convert by save/load is F32 only, so
  // instead perturb in float with a step large enough for float rounding.
  m.set_requires_grad(true);
  at::Tensor ids =
      at::tensor(std::vector<int64_t>{3, 17, 42, 5, 8, 61, 9, 1, 33, 70}, at::kLong).view({2, 5});
  at::Tensor loss = m.next_token_loss(ids);
  loss.backward();
  int with_grad = 0;
  for (auto& [n, p] : m.named_parameters()) {
    ASSERT_TRUE(p.grad().defined()) << n;
    EXPECT_TRUE(at::isfinite(p.grad()).all().item<bool>()) << n;
    with_grad += p.grad().abs().sum().item<double>() > 0;
  }
  EXPECT_EQ(with_grad, static_cast<int>(m.named_parameters().size()));
  at::Tensor w = m.linear("model.layers.0.self_attn.q_proj")->weight;
  const double g = w.grad()[3][7].item<double>();
  const float h = 1e-2f;
  double lp, lm;
  {
    at::NoGradGuard ng;
    const float orig = w[3][7].item<float>();
    w[3][7] = orig + h;
    lp = m.next_token_loss(ids).item<double>();
    w[3][7] = orig - h;
    lm = m.next_token_loss(ids).item<double>();
    w[3][7] = orig;
  }
  const double fd = (lp - lm) / (2 * h);
  EXPECT_NEAR(g, fd, 0.05 * std::abs(fd) + 2e-4)
      << "autograd " << g << " vs finite difference " << fd;
  EXPECT_GT(std::abs(g), 1e-5);
}

TEST(Eval, PerplexityIsMeanWindowNll) {
  at::set_num_threads(1);
  const ModelConfig c = parse_config(cases()[0].config.dump(), "p");
  CausalLM m = CausalLM::random(c, 9, 0.2);
  std::vector<int32_t> tokens(103);
  for (size_t i = 0; i < tokens.size(); ++i)
    tokens[i] = static_cast<int32_t>((i * 37 + 11) % c.vocab_size);
  PerplexityOptions opt;
  opt.seqlen = 16;
  opt.batch = 2;
  int64_t last = 0;
  opt.progress = [&](int64_t done, int64_t total) {
    EXPECT_EQ(total, 6);
    last = done;
  };
  PerplexityResult r = perplexity(m, tokens, opt);
  EXPECT_EQ(r.windows_available, 6);  // 103 / 16, the tail dropped
  EXPECT_EQ(r.windows, 6);
  EXPECT_EQ(last, 6);
  EXPECT_EQ(r.predicted_tokens, 6 * 15);
  // Independent: per-window log-softmax of full logits.
  double total = 0;
  ASSERT_EQ(r.window_nll.size(), 6u);
  for (int wdx = 0; wdx < 6; ++wdx) {
    at::Tensor ids = at::empty({1, 16}, at::kLong);
    for (int i = 0; i < 16; ++i) ids[0][i] = tokens[wdx * 16 + i];
    at::Tensor lp = at::log_softmax(m.forward(ids).to(at::kDouble), -1);
    double window = 0;
    for (int i = 0; i < 15; ++i) window -= lp[0][i][tokens[wdx * 16 + i + 1]].item<double>();
    EXPECT_NEAR(r.window_nll[wdx], window / 15, 1e-5) << "window " << wdx;
    total += window;
  }
  EXPECT_NEAR(r.mean_nll, total / 90, 1e-5);
  // The per-window values do not depend on how windows are batched (up to the products' rounding).
  PerplexityOptions one = opt;
  one.batch = 1;
  one.progress = nullptr;
  const std::vector<double> single = perplexity(m, tokens, one).window_nll;
  ASSERT_EQ(single.size(), 6u);
  for (int wdx = 0; wdx < 6; ++wdx) EXPECT_NEAR(single[wdx], r.window_nll[wdx], 1e-6) << wdx;
  EXPECT_NEAR(r.perplexity, std::exp(total / 90), 1e-4 * r.perplexity);
  opt.max_windows = 2;
  opt.progress = nullptr;
  EXPECT_EQ(perplexity(m, tokens, opt).windows, 2);
  opt.seqlen = 200;
  EXPECT_THROW(perplexity(m, tokens, opt), std::invalid_argument);
}

#ifdef DMX_EVAL_BIN
TEST(Eval, DmxEvalCliWritesJson) {
  at::set_num_threads(1);
  // A Qwen3-shaped model with the real Qwen3 vocabulary size and tokenizer, tiny otherwise.
  json cfg = cases()[2].config;
  cfg["vocab_size"] = 151936;
  cfg["hidden_size"] = 16;
  cfg["num_attention_heads"] = 2;
  cfg["num_key_value_heads"] = 1;
  cfg["head_dim"] = 8;
  cfg["intermediate_size"] = 32;
  cfg["num_hidden_layers"] = 1;
  const ModelConfig c = parse_config(cfg.dump(), "cli");
  const fs::path d = temp_dir("cli");
  CausalLM m = CausalLM::random(c, 21, 0.5);
  m.save((d / "model").string(), at::kFloat);
  fs::copy_file(std::string(DMX_QUANT_TOKENIZERS) + "/qwen3_tokenizer.json",
                d / "model" / "tokenizer.json");
  std::string text;
  for (int i = 0; i < 40; ++i)
    text += " = Section " + std::to_string(i) +
            " = \n The quick brown fox jumps over the lazy dog . \n";
  std::ofstream(d / "wiki.test.raw") << text;

  const std::string bin = DMX_EVAL_BIN;
  const std::string out = (d / "ppl.json").string();
  const std::string cmd = bin + " --model " + (d / "model").string() + " --data " +
                          (d / "wiki.test.raw").string() +
                          " --seqlen 64 --max-windows 3 --threads 1 --out " + out + " > " +
                          (d / "log").string() + " 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  std::ifstream in(out);
  json r = json::parse(in);
  EXPECT_EQ(r["windows"], 3);
  EXPECT_EQ(r["seqlen"], 64);
  EXPECT_EQ(r["predicted_tokens"], 3 * 63);
  EXPECT_EQ(r["threads"], 1);  // --threads N is exactly N
  // --threads 2 gives 2 threads, reported in the log line, and the same perplexity to rounding.
  {
    const std::string out2 = (d / "ppl2.json").string(), log2 = (d / "log2").string();
    ASSERT_EQ(std::system((bin + " --model " + (d / "model").string() + " --data " +
                           (d / "wiki.test.raw").string() +
                           " --seqlen 64 --max-windows 3 --threads 2 --out " + out2 + " 2> " + log2)
                              .c_str()),
              0);
    std::ifstream in2(out2);
    const json r2 = json::parse(in2);
    EXPECT_EQ(r2["threads"], 2);
    EXPECT_NEAR(r2["perplexity"].get<double>(), r["perplexity"].get<double>(),
                1e-5 * r["perplexity"].get<double>());
    std::ifstream lg(log2);
    const std::string all((std::istreambuf_iterator<char>(lg)), std::istreambuf_iterator<char>());
    EXPECT_NE(all.find("; 2 threads\n"), std::string::npos) << all;
  }
  // Negative or absurd --threads: a usage error (exit 2), nothing run.
  for (const char* bad : {" --threads -1", " --threads 5000"})
    EXPECT_EQ(WEXITSTATUS(std::system((bin + " --model " + (d / "model").string() + " --data " +
                                       (d / "wiki.test.raw").string() + bad + " > /dev/null 2>&1")
                                          .c_str())),
              2)
        << bad;
  // Same numbers in-process.
  Tokenizer tok = Tokenizer::load((d / "model").string());
  PerplexityOptions opt;
  opt.seqlen = 64;
  opt.max_windows = 3;
  CausalLM loaded = CausalLM::load((d / "model").string());
  PerplexityResult pr = perplexity(loaded, tok.encode(text), opt);
  EXPECT_EQ(r["tokens_in_file"].get<int64_t>(), pr.tokens_in_file);
  EXPECT_NEAR(r["perplexity"].get<double>(), pr.perplexity, 1e-9 * pr.perplexity);
  EXPECT_NEAR(r["mean_nll"].get<double>(), std::log(r["perplexity"].get<double>()), 1e-9);

  // Usage error -> 2; a failure -> 1 with a one-line message naming the input; no output file.
  EXPECT_EQ(WEXITSTATUS(std::system((bin + " --model x > /dev/null 2>&1").c_str())), 2);
  const std::string out2 = (d / "never.json").string();
  EXPECT_EQ(WEXITSTATUS(std::system((bin + " --model " + (d / "missing").string() + " --data " +
                                     (d / "wiki.test.raw").string() + " --out " + out2 + " > " +
                                     (d / "err").string() + " 2>&1")
                                        .c_str())),
            1);
  EXPECT_FALSE(fs::exists(out2));
  std::ifstream err(d / "err");
  std::string line;
  std::getline(err, line);
  EXPECT_NE(line.find("missing"), std::string::npos) << line;
  // Refused before any evaluation, one line each: a window past the machine's memory (160 GB at
  // 100,000 tokens), an --out in a directory that does not exist, a directory without config.json.
  auto fails = [&](const std::string& args, const std::string& want) {
    const int rc = std::system((bin + " --data " + (d / "wiki.test.raw").string() + " " + args +
                                " > " + (d / "err").string() + " 2>&1")
                                   .c_str());
    EXPECT_EQ(WEXITSTATUS(rc), 1) << args;
    std::ifstream e(d / "err");
    std::string all((std::istreambuf_iterator<char>(e)), {});
    EXPECT_NE(all.find(want), std::string::npos) << args << ": " << all;
    EXPECT_EQ(std::count(all.begin(), all.end(), '\n'), 1) << all;
  };
  fails("--model " + (d / "model").string() + " --seqlen 100000", "needs about");
  fails("--model " + (d / "model").string() + " --out /nonexistent/r.json",
        "--out /nonexistent/r.json: its directory does not exist");
  fs::create_directories(d / "noconfig");
  fs::copy_file(d / "model" / "tokenizer.json", d / "noconfig" / "tokenizer.json");
  fails("--model " + (d / "noconfig").string(), "has no config.json");
  fs::remove_all(d);
}
#endif

TEST(Tensors, FromSafetensorsViews) {
  const fs::path d = temp_dir("views");
  std::vector<uint16_t> bf16 = {0x3f80, 0xc040, 0x0000, 0x4120};  // 1, -3, 0, 10
  std::vector<uint16_t> f16 = {0x3c00, 0xc200};                   // 1, -3
  std::vector<uint8_t> e4m3 = {0x00, 0x38, 0xb8, 0x7e, 0xfe, 0x01};
  std::vector<uint8_t> fp4 = {0x21, 0x43, 0x65, 0x87};
  write_safetensors((d / "v.safetensors").string(),
                    {{"bf16", DType::BF16, {2, 2}, bf16.data(), 8},
                     {"f16", DType::F16, {2}, f16.data(), 4},
                     {"e4m3", DType::F8_E4M3, {2, 3}, e4m3.data(), 6},
                     {"fp4", DType::F4, {2, 4}, fp4.data(), 4}});
  SafetensorsFile f((d / "v.safetensors").string());
  at::Tensor b = tensor_from_view(*f.find("bf16"));
  EXPECT_EQ(b.scalar_type(), at::kBFloat16);
  EXPECT_TRUE(at::equal(b.to(at::kFloat), at::tensor({1.0f, -3.0f, 0.0f, 10.0f}).view({2, 2})));
  at::Tensor h = tensor_from_view(*f.find("f16"));
  EXPECT_EQ(h.scalar_type(), at::kHalf);
  EXPECT_TRUE(at::equal(h.to(at::kFloat), at::tensor({1.0f, -3.0f})));
  at::Tensor e = tensor_from_view(*f.find("e4m3"));  // raw codes, same shape
  EXPECT_EQ(e.scalar_type(), at::kByte);
  EXPECT_EQ(e.sizes(), at::IntArrayRef({2, 3}));
  EXPECT_EQ(e[1][1].item<int>(), 0xfe);
  at::Tensor p = tensor_from_view(*f.find("fp4"));  // two codes per byte: last dim halved
  EXPECT_EQ(p.scalar_type(), at::kByte);
  EXPECT_EQ(p.sizes(), at::IntArrayRef({2, 2}));
  EXPECT_EQ(p[1][0].item<int>(), 0x65);
  fs::remove_all(d);
}
