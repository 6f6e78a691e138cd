// Hugging Face `config.json` for LlamaForCausalLM (Llama 3.x incl. llama3 rope scaling, SmolLM2)
// and Qwen3ForCausalLM. Independent of LibTorch.
#pragma once

#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace dmx::quant {

class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class Architecture { Llama, Qwen3 };

struct RopeScaling {
  std::string type = "default";  // "default" or "llama3"
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
};

struct ModelConfig {
  Architecture arch = Architecture::Llama;
  std::string architecture_name;  // "LlamaForCausalLM" / "Qwen3ForCausalLM"
  std::string model_type;         // "llama" / "qwen3"
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  int64_t head_dim = 0;  // explicit in config.json or hidden_size / num_attention_heads
  int64_t vocab_size = 0;
  int64_t max_position_embeddings = 0;  // 0 when absent
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  bool attention_bias = false;
  bool mlp_bias = false;
  std::vector<int64_t> bos_token_ids;  // empty when absent/null
  std::vector<int64_t> eos_token_ids;
  std::string torch_dtype;  // "bfloat16", ... ("" when absent)

  int64_t q_dim() const { return num_attention_heads * head_dim; }
  int64_t kv_dim() const { return num_key_value_heads * head_dim; }
};

// Parses config.json text; `source` names the file in error messages. Unknown architectures,
// missing required keys and inconsistent values raise ConfigError with a one-line message.
ModelConfig parse_config(const std::string& json_text, const std::string& source);
ModelConfig load_config(const std::string& path);  // a config.json file or a model directory
// The config.json text for `cfg` (keys as Hugging Face writes them).
std::string config_to_json(const ModelConfig& cfg);

// RoPE inverse frequencies (head_dim / 2 values) after rope scaling, computed in FP32 the way
// transformers does (inv_freq = 1 / theta^(2i/d), then the llama3 wavelength bands).
std::vector<float> rope_inv_freq(const ModelConfig& cfg);

// Every tensor a checkpoint of `cfg` holds, by its HF name, with its shape (lm_head.weight only
// when the embeddings are untied).
std::map<std::string, std::vector<int64_t>> expected_tensor_shapes(const ModelConfig& cfg);
int64_t parameter_count(const ModelConfig& cfg);

// The HF names of the decoder Linears in model order:
// model.layers.{i}.self_attn.{q,k,v,o}_proj, model.layers.{i}.mlp.{gate,up,down}_proj.
std::vector<std::string> decoder_linear_names(const ModelConfig& cfg);

}  // namespace dmx::quant
