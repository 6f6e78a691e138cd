// Deploying a searched assignment: the per-layer formats of `assignment.json`, the
// packed-MX checkpoint (schema `dmx_mx` version 1, see quant/deploy/README.md), and the kernel
// backend: decoder Linears executed by dmx::kernels on packed weights, activations quantized on
// the fly to the layer's activation format.
#pragma once

#include <dmx/golden.h>
#include <dmx/kernels.h>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "dmx/quant/model.h"

namespace dmx::quant {

// ---- Per-layer formats
// ---------------------------------------------------------------------------
struct ModuleFormats {
  MxFormat weight = MxFormat::E2M1;
  MxFormat act = MxFormat::E2M1;
};
// Decoder Linear HF name ("model.layers.0.self_attn.q_proj") -> formats; every decoder Linear of
// the model is present.
using FormatAssignment = std::map<std::string, ModuleFormats>;

// assignment.json as dmx-search writes it: {"layers": [{"layer": NAME, "weight_format": FMT,
// "act_format": FMT, ...}, ...], ...} (other keys ignored). Validated against `cfg`: every decoder
// Linear exactly once, no other names, formats golden's parse_format accepts. Errors throw
// std::runtime_error with a one-line message naming `source`.
FormatAssignment parse_assignment(const std::string& json_text, const std::string& source,
                                  const ModelConfig& cfg);
FormatAssignment load_assignment(const std::string& path, const ModelConfig& cfg);
// The rotation an assignment was searched under: its "rotation" key, {"kind": "hadamard",
// "seed": N} (dmx-search --rotate hadamard), or nullopt when absent or null. The formats apply to
// the model rotated with that seed (CausalLM::rotate_hadamard) only.
std::optional<uint64_t> assignment_rotation(const std::string& json_text,
                                            const std::string& source);
FormatAssignment uniform_assignment(const ModelConfig& cfg, MxFormat weight, MxFormat act);
// Mean of (weight bits + activation bits) / 2 over the layers (dmx-search's avg_bits).
double assignment_avg_bits(const FormatAssignment& a);

// The fake-quant path of dmx-search: every decoder Linear wrapped in an MxLinear with fixed
// formats.
void apply_fake_quant(CausalLM& model, const FormatAssignment& a);

// ---- Packed-MX checkpoint (schema: quant/deploy/README.md)
// ---------------------------------------
inline constexpr const char* kPackedQuantMethod = "dmx_mx";
inline constexpr int kPackedFormatVersion = 1;

struct ExportOptions {
  bool overwrite = false;      // replace an existing non-empty output directory
  std::string tokenizer_path;  // copied to OUT/tokenizer.json ("" = SRC/tokenizer.json if present)
  kernels::KernelConfig kernel;
};
struct ExportStats {
  int64_t packed_linears = 0;
  uint64_t safetensors_bytes = 0;    // model.safetensors
  uint64_t packed_weight_bytes = 0;  // blocks + scales of the packed Linears
  uint64_t dense_bytes = 0;          // tensors kept in their dtype
};
// Reads the HF checkpoint in `src_dir`, quantizes every decoder Linear weight to its assigned
// format (kernels::quantize, bit-identical to golden quantize_row + pack_codes; rows zero-padded
// to a multiple of 32), keeps every other tensor byte for byte in its dtype, and writes
// config.json (with quantization_config), model.safetensors and tokenizer.json into a temporary
// directory that is renamed to `out_dir` at the end (no partial output). NaN/Inf weights are an
// error naming the tensor.
ExportStats export_packed(const std::string& src_dir, const FormatAssignment& a,
                          const std::string& out_dir, const ExportOptions& opt = {});

struct PackedLinearData {
  std::string name;
  ModuleFormats formats;
  int64_t out_features = 0, in_features = 0;  // in_features before padding
  std::vector<uint8_t> codes;                 // out * packed_bytes(weight, padded(in))
  std::vector<uint8_t> scales;                // out * padded(in) / 32
  at::Tensor bias;                            // FP32, undefined when none
  int64_t padded_in() const { return static_cast<int64_t>(padded_length(in_features)); }
  kernels::MxMatrixView view() const;
};
struct PackedCheckpoint {
  std::string dir;
  ModelConfig config;
  FormatAssignment formats;
  std::map<std::string, at::Tensor> dense;  // every other tensor, as stored
  std::map<std::string, PackedLinearData> linears;
};
// True when DIR/config.json declares quantization_config.quant_method == "dmx_mx".
bool is_packed_checkpoint(const std::string& dir);
// Loads and validates a packed checkpoint: quant_method, format_version (this build reads 1),
// block_size 32, scale rule, every decoder Linear's formats, each tensor's presence, dtype (U8)
// and shape, no unexpected tensors, no NaN scale (0xFF) and no NaN/Inf element code. Errors throw
// ModelError with a one-line message naming the directory and the tensor or key.
PackedCheckpoint load_packed(const std::string& dir);

// ---- Kernel backend
// ------------------------------------------------------------------------------ A decoder Linear
// on dmx::kernels: weights packed (MX, canonical layout), input rows quantized to the activation
// format (kernels::quantize == golden), then MX x MX GEMM (M > 1, weights prepacked once for the
// activation format) or GEMV (M = 1); each output element equals golden dot_blocked of the two
// quantized rows, then + bias (one FP32 addition). `weight` is a stride-0 placeholder of the right
// shape (no FP32 copy is kept).
class KernelLinear : public Linear {
 public:
  KernelLinear(PackedLinearData data, const kernels::KernelConfig& cfg = {});
  at::Tensor forward(const at::Tensor& x) override;
  const PackedLinearData& data() const { return data_; }
  kernels::MxMatrixView view() const { return data_.view(); }

 private:
  PackedLinearData data_;
  kernels::KernelConfig cfg_;
  kernels::PackedWeights prepacked_;
};

enum class Backend { FakeQuant, Kernels };
std::optional<Backend> parse_backend(const std::string& s);  // "fake-quant" / "torch", "kernels"
const char* backend_name(Backend b);

// A runnable model from a packed checkpoint. Kernels: KernelLinears on the packed weights.
// FakeQuant: each packed weight dequantized (golden's values) into an FP32 Linear wrapped in an
// MxLinear with the checkpoint's formats (re-quantizing MX values to their own format is exact),
// i.e. dmx-search's fake-quant numerics. Dense tensors are cast to `dtype`. Consumes `ck`.
CausalLM build_model(PackedCheckpoint&& ck, Backend backend, at::ScalarType dtype = at::kFloat,
                     const kernels::KernelConfig& cfg = {});
// Quantizes the decoder Linears of an unquantized model (loaded in FP32) per `a` and replaces them
// by KernelLinears (their FP32 weights are released).
void use_kernel_backend(CausalLM& model, const FormatAssignment& a,
                        const kernels::KernelConfig& cfg = {});

// A model directory that is either a packed checkpoint (its own formats; `assignment` must be
// empty) or an HF checkpoint (with `assignment`: quantized per the file; without: FP32/BF16).
CausalLM load_for_backend(const std::string& dir, const std::string& assignment, Backend backend,
                          at::ScalarType dtype = at::kFloat, const kernels::KernelConfig& cfg = {});

// ---- Generation
// -----------------------------------------------------------------------------------
struct GenerateOptions {
  int64_t max_new_tokens = 64;
  double temperature = 0.0;       // 0: greedy (argmax, lowest id on ties)
  int64_t top_k = 0;              // sampling: keep the k most likely (0: all)
  double top_p = 1.0;             // sampling: nucleus
  uint64_t seed = 0;              // sampling RNG (std::mt19937_64)
  std::vector<int64_t> stop_ids;  // stop after emitting one of these
};
struct GenerateResult {
  std::vector<int32_t> tokens;  // new tokens only
  int64_t prompt_tokens = 0;
  double prefill_seconds = 0, decode_seconds = 0;  // decode: every step after the first token
  double prefill_tokens_per_s() const;
  double decode_tokens_per_s() const;  // (tokens - 1) / decode_seconds
};
// Prefill of the prompt in one forward (KV cache), then one token per step.
GenerateResult generate(const CausalLM& model, const std::vector<int32_t>& prompt,
                        const GenerateOptions& opt,
                        const std::function<void(int32_t)>& on_token = {});
// The next token from logits [V] (FP32) under `opt` (greedy or sampled with `rng`).
int32_t pick_token(const at::Tensor& logits, const GenerateOptions& opt, std::mt19937_64& rng);

}  // namespace dmx::quant
