// config.json parsing for the Llama and Qwen3 families.
#include "dmx/quant/config.h"

#include <dmx/json.h>
#include <dmx/util.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace dmx::quant {
namespace {

using json = nlohmann::json;

[[noreturn]] void fail(const std::string& source, const std::string& what) {
  throw ConfigError(source + ": " + what);
}

// The largest value each size may take: every published dense decoder fits (Llama-3.1-405B:
// hidden 16384, intermediate 53248, 126 layers, 128 heads, vocab 128256), and every product of
// them stays far inside int64.
int64_t max_of(const char* key) {
  static const std::pair<const char*, int64_t> kMax[] = {
      {"hidden_size", 1 << 17},       {"intermediate_size", 1 << 20},
      {"num_hidden_layers", 4096},    {"num_attention_heads", 4096},
      {"num_key_value_heads", 4096},  {"head_dim", 4096},
      {"vocab_size", 1 << 23},        {"max_position_embeddings", int64_t(1) << 24},
      {"original_max_position_embeddings", int64_t(1) << 24}};
  for (const auto& [k, m] : kMax)
    if (std::string(key) == k) return m;
  return int64_t(1) << 31;
}

// An integer in [0, max_of(key)] (a float with no fraction is accepted, as transformers writes
// some sizes); anything else is refused before it is converted.
int64_t get_int(const json& j, const char* key, const std::string& src, bool required,
                int64_t fallback = 0) {
  if (!j.contains(key) || j[key].is_null()) {
    if (required) fail(src, std::string("missing key \"") + key + "\"");
    return fallback;
  }
  const json& v = j[key];
  const int64_t hi = max_of(key);
  auto range = [&]() {
    fail(src, std::string("key \"") + key + "\" must be an integer in [0, " + std::to_string(hi) +
                  "], got " + v.dump());
  };
  if (v.is_number_unsigned()) {
    if (v.get<uint64_t>() > uint64_t(hi)) range();
    return int64_t(v.get<uint64_t>());
  }
  if (v.is_number_integer()) {
    if (v.get<int64_t>() < 0 || v.get<int64_t>() > hi) range();
    return v.get<int64_t>();
  }
  if (v.is_number_float()) {
    const double d = v.get<double>();
    if (!(d >= 0 && d <= double(hi)) || std::floor(d) != d) range();
    return static_cast<int64_t>(d);
  }
  fail(src, std::string("key \"") + key + "\" is not an integer: " + v.dump());
}

double get_double(const json& j, const char* key, const std::string& src, bool required,
                  double fallback = 0) {
  if (!j.contains(key) || j[key].is_null()) {
    if (required) fail(src, std::string("missing key \"") + key + "\"");
    return fallback;
  }
  if (!j[key].is_number())
    fail(src, std::string("key \"") + key + "\" is not a number: " + j[key].dump());
  return j[key].get<double>();
}

bool get_bool(const json& j, const char* key, const std::string& src, bool fallback) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  if (!j[key].is_boolean())
    fail(src, std::string("key \"") + key + "\" is not a boolean: " + j[key].dump());
  return j[key].get<bool>();
}

std::vector<int64_t> get_token_ids(const json& j, const char* key, const std::string& src) {
  std::vector<int64_t> out;
  if (!j.contains(key) || j[key].is_null()) return out;
  const json& v = j[key];
  if (v.is_number_integer()) {
    out.push_back(v.get<int64_t>());
  } else if (v.is_array()) {
    for (const json& e : v) {
      if (!e.is_number_integer())
        fail(src, std::string("key \"") + key + "\" holds a non-integer: " + e.dump());
      out.push_back(e.get<int64_t>());
    }
  } else {
    fail(src, std::string("key \"") + key + "\" is neither an integer nor a list: " + v.dump());
  }
  return out;
}

// rope_scaling (transformers <= 4.x) or rope_parameters (transformers 5): same fields, the latter
// also carrying rope_theta.
void parse_rope(const json& j, const std::string& src, ModelConfig& c) {
  const json* rp = nullptr;
  const char* rp_name = nullptr;
  if (j.contains("rope_parameters") && !j["rope_parameters"].is_null()) {
    rp = &j["rope_parameters"];
    rp_name = "rope_parameters";
  } else if (j.contains("rope_scaling") && !j["rope_scaling"].is_null()) {
    rp = &j["rope_scaling"];
    rp_name = "rope_scaling";
  }
  bool have_theta = j.contains("rope_theta") && !j["rope_theta"].is_null();
  if (have_theta) c.rope_theta = get_double(j, "rope_theta", src, true);
  if (rp) {
    if (!rp->is_object()) fail(src, std::string(rp_name) + " is not an object");
    const json& r = *rp;
    if (r.contains("rope_theta")) {
      c.rope_theta = get_double(r, "rope_theta", src + " " + rp_name, true);
      have_theta = true;
    }
    std::string type = "default";
    for (const char* k : {"rope_type", "type"})
      if (r.contains(k) && r[k].is_string()) {
        type = r[k].get<std::string>();
        break;
      }
    const std::string where = src + " " + rp_name;
    if (type == "llama3") {
      c.rope_scaling.type = "llama3";
      c.rope_scaling.factor = get_double(r, "factor", where, true);
      c.rope_scaling.low_freq_factor = get_double(r, "low_freq_factor", where, true);
      c.rope_scaling.high_freq_factor = get_double(r, "high_freq_factor", where, true);
      c.rope_scaling.original_max_position_embeddings =
          get_int(r, "original_max_position_embeddings", where, true);
      if (!(c.rope_scaling.factor > 0) ||
          !(c.rope_scaling.high_freq_factor > c.rope_scaling.low_freq_factor) ||
          c.rope_scaling.original_max_position_embeddings <= 0)
        fail(src, std::string(rp_name) + " llama3 has inconsistent factors");
    } else if (type != "default") {
      fail(src, std::string(rp_name) + " type \"" + type + "\" is not supported (default, llama3)");
    }
  }
  if (!have_theta) fail(src, "missing key \"rope_theta\" (or rope_parameters.rope_theta)");
  if (!(c.rope_theta > 1.0)) fail(src, "rope_theta must be > 1");
}

ModelConfig parse_config_object(const json& j, const std::string& src);

}  // namespace

ModelConfig parse_config(const std::string& text, const std::string& src) {
  json j = parse_json<ConfigError>(text, src);
  if (!j.is_object()) fail(src, "not a JSON object");
  try {
    return parse_config_object(j, src);
  } catch (const json::exception& e) {  // a value of the wrong JSON type somewhere
    std::string msg = e.what();
    fail(src, "unexpected structure (" + msg.substr(msg.find(']') + 2) + ")");
  }
}

namespace {
ModelConfig parse_config_object(const json& j, const std::string& src) {
  ModelConfig c;
  if (!j.contains("architectures") || !j["architectures"].is_array() ||
      j["architectures"].empty() || !j["architectures"][0].is_string())
    fail(src, "missing key \"architectures\"");
  c.architecture_name = j["architectures"][0].get<std::string>();
  if (c.architecture_name == "LlamaForCausalLM") {
    c.arch = Architecture::Llama;
  } else if (c.architecture_name == "Qwen3ForCausalLM") {
    c.arch = Architecture::Qwen3;
  } else {
    fail(src, "unsupported architecture \"" + c.architecture_name +
                  "\" (supported: LlamaForCausalLM, Qwen3ForCausalLM)");
  }
  c.model_type = j.value("model_type", c.arch == Architecture::Llama ? "llama" : "qwen3");
  for (const char* moe : {"num_local_experts", "num_experts", "n_routed_experts"})
    if (j.contains(moe) && !j[moe].is_null() && !(j[moe].is_number() && j[moe] == 0))
      fail(src, std::string("key \"") + moe + "\": a mixture-of-experts model is not supported");
  c.hidden_size = get_int(j, "hidden_size", src, true);
  c.intermediate_size = get_int(j, "intermediate_size", src, true);
  c.num_hidden_layers = get_int(j, "num_hidden_layers", src, true);
  c.num_attention_heads = get_int(j, "num_attention_heads", src, true);
  c.num_key_value_heads = get_int(j, "num_key_value_heads", src, false, c.num_attention_heads);
  c.vocab_size = get_int(j, "vocab_size", src, true);
  c.rms_norm_eps = get_double(j, "rms_norm_eps", src, true);
  c.max_position_embeddings = get_int(j, "max_position_embeddings", src, false, 0);
  if (c.hidden_size <= 0 || c.intermediate_size <= 0 || c.num_hidden_layers <= 0 ||
      c.num_attention_heads <= 0 || c.num_key_value_heads <= 0 || c.vocab_size <= 0)
    fail(src, "sizes must be positive");
  if (c.num_attention_heads % c.num_key_value_heads != 0)
    fail(src, "num_attention_heads " + std::to_string(c.num_attention_heads) +
                  " is not a multiple of num_key_value_heads " +
                  std::to_string(c.num_key_value_heads));
  if (j.contains("head_dim") && !j["head_dim"].is_null()) {
    c.head_dim = get_int(j, "head_dim", src, true);
  } else {
    if (c.hidden_size % c.num_attention_heads != 0)
      fail(src, "no head_dim and hidden_size is not a multiple of num_attention_heads");
    c.head_dim = c.hidden_size / c.num_attention_heads;
  }
  if (c.head_dim <= 0 || c.head_dim % 2 != 0) fail(src, "head_dim must be positive and even");
  if (!(c.rms_norm_eps > 0)) fail(src, "rms_norm_eps must be > 0");
  parse_rope(j, src, c);
  if (j.value("hidden_act", std::string("silu")) != "silu")
    fail(src, "hidden_act \"" + j["hidden_act"].get<std::string>() + "\" is not supported (silu)");
  if (get_bool(j, "use_sliding_window", src, false))
    fail(src, "use_sliding_window true is not supported");
  if (j.contains("pretraining_tp") && get_int(j, "pretraining_tp", src, false, 1) != 1)
    fail(src, "pretraining_tp other than 1 is not supported");
  c.tie_word_embeddings = get_bool(j, "tie_word_embeddings", src, false);
  c.attention_bias = get_bool(j, "attention_bias", src, false);
  c.mlp_bias = get_bool(j, "mlp_bias", src, false);
  c.bos_token_ids = get_token_ids(j, "bos_token_id", src);
  c.eos_token_ids = get_token_ids(j, "eos_token_id", src);
  for (auto v : {&c.bos_token_ids, &c.eos_token_ids})
    for (int64_t id : *v)
      if (id < 0 || id >= c.vocab_size)
        fail(src, "bos/eos token id " + std::to_string(id) + " outside the vocabulary");
  if (j.contains("torch_dtype") && j["torch_dtype"].is_string())
    c.torch_dtype = j["torch_dtype"];
  else if (j.contains("dtype") && j["dtype"].is_string())
    c.torch_dtype = j["dtype"];
  return c;
}
}  // namespace

ModelConfig load_config(const std::string& path) {
  std::filesystem::path p(path);
  if (std::filesystem::is_directory(p)) {
    p /= "config.json";
    if (!std::filesystem::exists(p))
      throw ConfigError(path + ": the model directory has no config.json");
  }
  try {
    return parse_config(read_regular_file(p.string(), "model config", 16 << 20), p.string());
  } catch (const InputFileError& e) {
    throw ConfigError(e.what());
  }
}

std::string config_to_json(const ModelConfig& c) {
  json j;
  j["architectures"] = {c.architecture_name};
  j["model_type"] = c.model_type;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["num_hidden_layers"] = c.num_hidden_layers;
  j["num_attention_heads"] = c.num_attention_heads;
  j["num_key_value_heads"] = c.num_key_value_heads;
  j["head_dim"] = c.head_dim;
  j["vocab_size"] = c.vocab_size;
  if (c.max_position_embeddings > 0) j["max_position_embeddings"] = c.max_position_embeddings;
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["rope_theta"] = c.rope_theta;
  if (c.rope_scaling.type == "llama3") {
    j["rope_scaling"] = {
        {"rope_type", "llama3"},
        {"factor", c.rope_scaling.factor},
        {"low_freq_factor", c.rope_scaling.low_freq_factor},
        {"high_freq_factor", c.rope_scaling.high_freq_factor},
        {"original_max_position_embeddings", c.rope_scaling.original_max_position_embeddings}};
  } else {
    j["rope_scaling"] = nullptr;
  }
  j["hidden_act"] = "silu";
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  j["attention_bias"] = c.attention_bias;
  if (c.arch == Architecture::Llama) j["mlp_bias"] = c.mlp_bias;
  auto ids = [](const std::vector<int64_t>& v) -> json {
    if (v.empty()) return nullptr;
    if (v.size() == 1) return v[0];
    return v;
  };
  j["bos_token_id"] = ids(c.bos_token_ids);
  j["eos_token_id"] = ids(c.eos_token_ids);
  if (!c.torch_dtype.empty()) j["torch_dtype"] = c.torch_dtype;
  return j.dump(2) + "\n";
}

std::vector<float> rope_inv_freq(const ModelConfig& c) {
  const int64_t half = c.head_dim / 2;
  std::vector<float> inv(half);
  for (int64_t i = 0; i < half; ++i) {
    // transformers: 1.0 / (base ** (arange(0, dim, 2).float() / dim)), in FP32.
    float expo = static_cast<float>(2 * i) / static_cast<float>(c.head_dim);
    inv[i] = 1.0f / std::pow(static_cast<float>(c.rope_theta), expo);
  }
  if (c.rope_scaling.type == "llama3") {
    const RopeScaling& r = c.rope_scaling;
    const double old_ctx = static_cast<double>(r.original_max_position_embeddings);
    const double low_wavelen = old_ctx / r.low_freq_factor;
    const double high_wavelen = old_ctx / r.high_freq_factor;
    const double pi = 3.14159265358979323846;
    for (float& f : inv) {
      const double wavelen = 2 * pi / f;
      if (wavelen > low_wavelen) {
        f = static_cast<float>(f / r.factor);
      } else if (wavelen >= high_wavelen) {
        const double smooth =
            (old_ctx / wavelen - r.low_freq_factor) / (r.high_freq_factor - r.low_freq_factor);
        f = static_cast<float>((1 - smooth) * f / r.factor + smooth * f);
      }
    }
  }
  return inv;
}

std::map<std::string, std::vector<int64_t>> expected_tensor_shapes(const ModelConfig& c) {
  std::map<std::string, std::vector<int64_t>> s;
  const int64_t h = c.hidden_size, q = c.q_dim(), kv = c.kv_dim(), ff = c.intermediate_size;
  s["model.embed_tokens.weight"] = {c.vocab_size, h};
  s["model.norm.weight"] = {h};
  if (!c.tie_word_embeddings) s["lm_head.weight"] = {c.vocab_size, h};
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    s[p + "input_layernorm.weight"] = {h};
    s[p + "post_attention_layernorm.weight"] = {h};
    s[p + "self_attn.q_proj.weight"] = {q, h};
    s[p + "self_attn.k_proj.weight"] = {kv, h};
    s[p + "self_attn.v_proj.weight"] = {kv, h};
    s[p + "self_attn.o_proj.weight"] = {h, q};
    if (c.attention_bias) {
      s[p + "self_attn.q_proj.bias"] = {q};
      s[p + "self_attn.k_proj.bias"] = {kv};
      s[p + "self_attn.v_proj.bias"] = {kv};
      s[p + "self_attn.o_proj.bias"] = {h};
    }
    if (c.arch == Architecture::Qwen3) {
      s[p + "self_attn.q_norm.weight"] = {c.head_dim};
      s[p + "self_attn.k_norm.weight"] = {c.head_dim};
    }
    s[p + "mlp.gate_proj.weight"] = {ff, h};
    s[p + "mlp.up_proj.weight"] = {ff, h};
    s[p + "mlp.down_proj.weight"] = {h, ff};
    if (c.mlp_bias) {
      s[p + "mlp.gate_proj.bias"] = {ff};
      s[p + "mlp.up_proj.bias"] = {ff};
      s[p + "mlp.down_proj.bias"] = {h};
    }
  }
  return s;
}

int64_t parameter_count(const ModelConfig& c) {
  int64_t n = 0;
  for (const auto& [name, shape] : expected_tensor_shapes(c)) {
    int64_t k = 1;
    for (int64_t d : shape)
      if (__builtin_mul_overflow(k, d, &k)) throw ConfigError(name + ": parameter count overflows");
    if (__builtin_add_overflow(n, k, &n)) throw ConfigError("the parameter count overflows");
  }
  return n;
}

std::vector<std::string> decoder_linear_names(const ModelConfig& c) {
  std::vector<std::string> out;
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    for (const char* n : {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                          "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"})
      out.push_back(p + n);
  }
  return out;
}

}  // namespace dmx::quant
