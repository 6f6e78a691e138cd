// Assignments, the packed-MX checkpoint (export / load), the kernel backend and generation.
#include "dmx/quant/deploy.h"

#include <ATen/ATen.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "dmx/json.h"
#include "dmx/quant/mx.h"

namespace dmx::quant {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

MxFormat format_of(const json& v, const std::string& where) {
  if (!v.is_string()) throw std::runtime_error(where + " must be a format name string");
  auto f = parse_format(v.get<std::string>());
  if (!f)
    throw std::runtime_error(where + " is \"" + v.get<std::string>() + "\", not an MX format");
  return *f;
}

int64_t block_bytes(MxFormat f) { return static_cast<int64_t>(packed_bytes(f, kBlockSize)); }

// Packs an FP32 weight [out, in] into `d` (rows zero-padded to whole blocks).
void pack_weight(const at::Tensor& w_in, PackedLinearData& d, const kernels::KernelConfig& cfg) {
  at::Tensor w = w_in.to(at::kFloat).contiguous();
  if (!at::isfinite(w).all().item<bool>())
    throw std::runtime_error("weight of \"" + d.name + "\" holds NaN or Inf");
  d.out_features = w.size(0);
  d.in_features = w.size(1);
  const size_t M = d.out_features, K = d.in_features, Kp = padded_length(K);
  std::vector<float> padded;
  const float* src = w.data_ptr<float>();
  if (Kp != K) {
    padded.resize(M * Kp);
    kernels::pad_rows(src, M, K, padded.data());
    src = padded.data();
  }
  d.codes.assign(M * packed_bytes(d.formats.weight, Kp), 0);
  d.scales.assign(M * Kp / kBlockSize, 0);
  kernels::quantize(d.formats.weight, src, M, Kp, d.codes.data(), d.scales.data(), {}, cfg);
}

// Element codes that decode to NaN or Inf (only FP8 formats have them).
std::array<bool, 256> special_codes(MxFormat f) {
  std::array<bool, 256> t{};
  if (format_bits(f) != 8) return t;
  for (int c = 0; c < 256; ++c) {
    const ElementValue v = decode_element_exact(f, static_cast<uint8_t>(c));
    t[c] = v.is_nan || v.is_inf;
  }
  return t;
}

json quantization_config(const FormatAssignment& a) {
  json modules = json::object();
  for (const auto& [name, f] : a)
    modules[name] = {{"weight_format", format_name(f.weight)}, {"act_format", format_name(f.act)}};
  return {{"quant_method", kPackedQuantMethod},
          {"format_version", kPackedFormatVersion},
          {"block_size", kBlockSize},
          {"scale_format", "E8M0"},
          {"scale_rule", "floor"},
          {"overflow", "saturate"},
          {"activation_scheme", "dynamic"},
          {"packing",
           "golden canonical: row-major along in_features zero-padded to a multiple of 32; per row "
           "the element codes block after block; FP8/INT8 one byte each, FP4 two per byte (even "
           "element in the low nibble), FP6 four elements in three bytes (little-endian 24-bit)"},
          {"tensors", {{"blocks", "{module}.weight_blocks"}, {"scales", "{module}.weight_scales"}}},
          {"avg_bits", assignment_avg_bits(a)},
          {"modules", modules},
          {"modules_to_not_convert", json::array({"model.embed_tokens", "lm_head"})}};
}

}  // namespace

// ---- Assignments -------------------------------------------------------------------------------
FormatAssignment parse_assignment(const std::string& text, const std::string& source,
                                  const ModelConfig& cfg) {
  const json j = parse_json<std::runtime_error>(text, source);
  if (!j.is_object() || !j.contains("layers") || !j["layers"].is_array())
    throw std::runtime_error(source + ": no \"layers\" array (not an assignment.json)");
  const std::vector<std::string> names = decoder_linear_names(cfg);
  const std::set<std::string> known(names.begin(), names.end());
  FormatAssignment a;
  for (size_t i = 0; i < j["layers"].size(); ++i) {
    const json& l = j["layers"][i];
    const std::string where = source + ": layers[" + std::to_string(i) + "]";
    if (!l.is_object() || !l.contains("layer") || !l["layer"].is_string())
      throw std::runtime_error(where + " has no \"layer\" name");
    const std::string name = l["layer"].get<std::string>();
    if (!known.count(name))
      throw std::runtime_error(where + ": \"" + name + "\" is not a decoder Linear of this model");
    if (a.count(name)) throw std::runtime_error(where + ": \"" + name + "\" appears twice");
    if (!l.contains("weight_format") || !l.contains("act_format"))
      throw std::runtime_error(where + " (\"" + name + "\") lacks weight_format or act_format");
    a[name] = {format_of(l["weight_format"], where + ".weight_format"),
               format_of(l["act_format"], where + ".act_format")};
  }
  for (const std::string& n : names)
    if (!a.count(n))
      throw std::runtime_error(source + ": no formats for decoder Linear \"" + n + "\" (" +
                               std::to_string(names.size() - a.size()) + " of " +
                               std::to_string(names.size()) + " missing)");
  return a;
}

std::optional<uint64_t> assignment_rotation(const std::string& text, const std::string& source) {
  const json j = parse_json<std::runtime_error>(text, source);
  if (!j.is_object() || !j.contains("rotation") || j["rotation"].is_null()) return std::nullopt;
  const json& r = j["rotation"];
  if (!r.is_object() || r.value("kind", json()) != "hadamard" || !r.contains("seed") ||
      !r["seed"].is_number_unsigned())
    throw std::runtime_error(source +
                             ": \"rotation\" must be {\"kind\": \"hadamard\", \"seed\": N}");
  return r["seed"].get<uint64_t>();
}

FormatAssignment load_assignment(const std::string& path, const ModelConfig& cfg) {
  return parse_assignment(read_regular_file(path, "assignment", 64 << 20), path, cfg);
}

FormatAssignment uniform_assignment(const ModelConfig& cfg, MxFormat weight, MxFormat act) {
  FormatAssignment a;
  for (const std::string& n : decoder_linear_names(cfg)) a[n] = {weight, act};
  return a;
}

double assignment_avg_bits(const FormatAssignment& a) {
  if (a.empty()) return 0;
  double s = 0;
  for (const auto& [n, f] : a) s += 0.5 * (format_bits(f.weight) + format_bits(f.act));
  return s / static_cast<double>(a.size());
}

void apply_fake_quant(CausalLM& model, const FormatAssignment& a) {
  for (const MxLinearPtr& l : wrap_decoder_linears(model)) {
    auto it = a.find(l->name());
    if (it == a.end()) throw ModelError("no formats for decoder Linear \"" + l->name() + "\"");
    l->set_fixed(it->second.weight, it->second.act);
  }
}

// ---- Export ------------------------------------------------------------------------------------
ExportStats export_packed(const std::string& src_dir, const FormatAssignment& a,
                          const std::string& out_dir, const ExportOptions& opt) {
  const ModelConfig cfg = load_config(src_dir);
  {
    const std::vector<std::string> names = decoder_linear_names(cfg);
    for (const std::string& n : names)
      if (!a.count(n)) throw ModelError("assignment has no formats for \"" + n + "\"");
    if (a.size() != names.size())
      throw ModelError("assignment names modules that are not decoder Linears of " + src_dir);
  }
  const fs::path out(out_dir);
  if (fs::exists(out) && !(fs::is_directory(out) && fs::is_empty(out)) && !opt.overwrite)
    throw ModelError(out_dir + ": exists and is not empty (use --force to replace it)");
  const Checkpoint ck(src_dir);
  auto expected = expected_tensor_shapes(cfg);
  for (const std::string& n : ck.names()) {
    if (expected.count(n)) continue;
    if (n == "lm_head.weight" && cfg.tie_word_embeddings) continue;  // tied: not copied
    if (n.size() > 19 && n.compare(n.size() - 19, 19, "rotary_emb.inv_freq") == 0) continue;
    throw ModelError(src_dir + ": checkpoint has an unexpected tensor \"" + n + "\"");
  }
  ExportStats st;
  std::vector<PackedLinearData> packed;
  std::vector<TensorToWrite> tensors;
  for (const auto& [name, shape] : expected) {
    const TensorView* v = ck.find(name);
    if (!v) throw ModelError(src_dir + ": checkpoint lacks tensor \"" + name + "\"");
    if (v->shape != shape)
      throw ModelError(src_dir + ": tensor \"" + name + "\" has shape " + shape_str(v->shape) +
                       " but the config needs " + shape_str(shape));
    if (!(v->dtype == DType::BF16 || v->dtype == DType::F16 || v->dtype == DType::F32 ||
          v->dtype == DType::F64))
      throw ModelError(src_dir + ": tensor \"" + name + "\" has dtype " + dtype_name(v->dtype) +
                       "; model weights must be BF16, F16 or F32");
    const std::string module = name.size() > 7 && name.compare(name.size() - 7, 7, ".weight") == 0
                                   ? name.substr(0, name.size() - 7)
                                   : std::string();
    auto it = module.empty() ? a.end() : a.find(module);
    if (it == a.end()) {  // kept byte for byte
      tensors.push_back({name, v->dtype, v->shape, v->data, v->nbytes});
      st.dense_bytes += v->nbytes;
      continue;
    }
    PackedLinearData d;
    d.name = module;
    d.formats = it->second;
    try {
      pack_weight(tensor_from_view(*v), d, opt.kernel);
    } catch (const std::runtime_error& e) {
      throw ModelError(src_dir + ": " + e.what());
    }
    packed.push_back(std::move(d));
  }
  for (const PackedLinearData& d : packed) {
    const int64_t nb = d.padded_in() / kBlockSize;
    tensors.push_back({d.name + ".weight_blocks",
                       DType::U8,
                       {d.out_features, nb, block_bytes(d.formats.weight)},
                       d.codes.data(),
                       d.codes.size()});
    tensors.push_back({d.name + ".weight_scales",
                       DType::U8,
                       {d.out_features, nb},
                       d.scales.data(),
                       d.scales.size()});
    st.packed_weight_bytes += d.codes.size() + d.scales.size();
    ++st.packed_linears;
  }

  // Everything goes into a temporary sibling directory, renamed at the end.
  dmx::StagedDirectory staged(out.string());
  const fs::path tmp = staged.dir();
  std::error_code ec;
  write_safetensors((tmp / "model.safetensors").string(), tensors,
                    {{"format", "pt"},
                     {"quant_method", kPackedQuantMethod},
                     {"format_version", std::to_string(kPackedFormatVersion)}});
  json cj = json::parse(config_to_json(cfg));
  cj["quantization_config"] = quantization_config(a);
  write_json_atomic((tmp / "config.json").string(), cj);
  const std::string tok = !opt.tokenizer_path.empty()
                              ? opt.tokenizer_path
                              : (fs::path(src_dir) / "tokenizer.json").string();
  if (fs::exists(tok)) {
    fs::copy_file(tok, tmp / "tokenizer.json", fs::copy_options::overwrite_existing, ec);
    if (ec) throw ModelError(tok + ": cannot copy (" + ec.message() + ")");
  } else if (!opt.tokenizer_path.empty()) {
    throw ModelError(tok + ": tokenizer file does not exist");
  }
  st.safetensors_bytes = fs::file_size(tmp / "model.safetensors");
  staged.commit();
  return st;
}

// ---- Load --------------------------------------------------------------------------------------
kernels::MxMatrixView PackedLinearData::view() const {
  return {formats.weight, static_cast<size_t>(out_features), static_cast<size_t>(padded_in()),
          codes.data(), scales.data()};
}

bool is_packed_checkpoint(const std::string& dir) {
  const fs::path p = fs::path(dir) / "config.json";
  if (!fs::is_regular_file(p)) return false;
  try {
    const json j = read_json_file(p.string(), "model config");
    return j.is_object() && j.contains("quantization_config") &&
           j["quantization_config"].is_object() &&
           j["quantization_config"].value("quant_method", std::string()) == kPackedQuantMethod;
  } catch (const std::exception&) {
    return false;
  }
}

PackedCheckpoint load_packed(const std::string& dir) {
  const std::string cpath = (fs::path(dir) / "config.json").string();
  PackedCheckpoint ck;
  ck.dir = dir;
  json j;
  try {
    j = read_json_file<ModelError>(cpath, "model config");
  } catch (const InputFileError& e) {
    throw ModelError(e.what());
  }
  try {
    ck.config = parse_config(j.dump(), cpath);
  } catch (const ConfigError& e) {
    throw ModelError(e.what());
  }
  const std::string qp = cpath + ": quantization_config";
  if (!j.contains("quantization_config") || !j["quantization_config"].is_object())
    throw ModelError(cpath + ": no quantization_config (not a packed-MX checkpoint)");
  const json& q = j["quantization_config"];
  if (q.value("quant_method", std::string()) != kPackedQuantMethod)
    throw ModelError(qp + ".quant_method is not \"" + kPackedQuantMethod + "\"");
  if (!q.contains("format_version") || !q["format_version"].is_number_integer())
    throw ModelError(qp + ".format_version is missing or not an integer");
  if (q["format_version"].get<int64_t>() != kPackedFormatVersion)
    throw ModelError(qp + ".format_version " + q["format_version"].dump() +
                     " is not supported (this build reads " + std::to_string(kPackedFormatVersion) +
                     ")");
  if (!q.contains("block_size") || q["block_size"] != kBlockSize)
    throw ModelError(qp + ".block_size must be " + std::to_string(kBlockSize));
  if (q.value("scale_rule", std::string()) != "floor")
    throw ModelError(qp + ".scale_rule must be \"floor\"");
  if (!q.contains("modules") || !q["modules"].is_object())
    throw ModelError(qp + ".modules is missing or not an object");
  {
    json layers = json::array();
    for (const auto& [name, m] : q["modules"].items()) {
      json l = m.is_object() ? m : json::object();
      l["layer"] = name;
      layers.push_back(l);
    }
    try {
      ck.formats = parse_assignment(json{{"layers", layers}}.dump(), qp + ".modules", ck.config);
    } catch (const std::runtime_error& e) {
      throw ModelError(e.what());
    }
  }

  const Checkpoint file(dir);
  std::set<std::string> used;
  auto need = [&](const std::string& name, DType dt,
                  const std::vector<int64_t>& shape) -> const TensorView& {
    const TensorView* v = file.find(name);
    if (!v) throw ModelError(dir + ": checkpoint lacks tensor \"" + name + "\"");
    if (v->dtype != dt)
      throw ModelError(dir + ": tensor \"" + name + "\" has dtype " + dtype_name(v->dtype) +
                       ", expected " + dtype_name(dt));
    if (v->shape != shape)
      throw ModelError(dir + ": tensor \"" + name + "\" has shape " + shape_str(v->shape) +
                       ", expected " + shape_str(shape));
    used.insert(name);
    return *v;
  };
  const auto expected = expected_tensor_shapes(ck.config);
  for (const auto& [module, f] : ck.formats) {
    const std::vector<int64_t>& ws = expected.at(module + ".weight");
    PackedLinearData d;
    d.name = module;
    d.formats = f;
    d.out_features = ws[0];
    d.in_features = ws[1];
    const int64_t nb = d.padded_in() / kBlockSize;
    const TensorView& b =
        need(module + ".weight_blocks", DType::U8, {d.out_features, nb, block_bytes(f.weight)});
    const TensorView& s = need(module + ".weight_scales", DType::U8, {d.out_features, nb});
    d.codes.assign(b.data, b.data + b.nbytes);
    d.scales.assign(s.data, s.data + s.nbytes);
    for (size_t i = 0; i < d.scales.size(); ++i)
      if (scale_is_nan(d.scales[i]))
        throw ModelError(dir + ": tensor \"" + module +
                         ".weight_scales\" holds the NaN scale 0xFF (row " +
                         std::to_string(i / nb) + ", block " + std::to_string(i % nb) + ")");
    const auto special = special_codes(f.weight);
    if (format_bits(f.weight) == 8)
      for (size_t i = 0; i < d.codes.size(); ++i)
        if (special[d.codes[i]])
          throw ModelError(dir + ": tensor \"" + module + ".weight_blocks\" holds a NaN/Inf " +
                           format_name(f.weight) + " code at byte " + std::to_string(i));
    auto bit = expected.find(module + ".bias");
    if (bit != expected.end()) {
      const TensorView* bv = file.find(bit->first);
      if (!bv) throw ModelError(dir + ": checkpoint lacks tensor \"" + bit->first + "\"");
      if (!(bv->dtype == DType::BF16 || bv->dtype == DType::F16 || bv->dtype == DType::F32 ||
            bv->dtype == DType::F64))
        throw ModelError(dir + ": tensor \"" + bit->first + "\" has dtype " +
                         dtype_name(bv->dtype) + "; dense tensors must be BF16, F16 or F32");
      d.bias = tensor_from_view(need(bit->first, bv->dtype, bit->second)).to(at::kFloat);
    }
    ck.linears.emplace(module, std::move(d));
  }
  for (const auto& [name, shape] : expected) {
    const std::string module = name.size() > 5 ? name.substr(0, name.rfind('.')) : std::string();
    if (ck.linears.count(module)) continue;  // weight / bias of a packed Linear
    const TensorView* v = file.find(name);
    if (!v) throw ModelError(dir + ": checkpoint lacks tensor \"" + name + "\"");
    if (!(v->dtype == DType::BF16 || v->dtype == DType::F16 || v->dtype == DType::F32 ||
          v->dtype == DType::F64))
      throw ModelError(dir + ": tensor \"" + name + "\" has dtype " + dtype_name(v->dtype) +
                       "; dense tensors must be BF16, F16 or F32");
    ck.dense[name] = tensor_from_view(need(name, v->dtype, shape));
  }
  for (const std::string& n : file.names())
    if (!used.count(n))
      throw ModelError(dir + ": checkpoint has an unexpected tensor \"" + n + "\"");
  return ck;
}

// ---- Kernel backend ----------------------------------------------------------------------------
KernelLinear::KernelLinear(PackedLinearData data, const kernels::KernelConfig& cfg)
    : Linear(data.name, at::zeros({1, 1}, at::kFloat).expand({data.out_features, data.in_features}),
             data.bias),
      data_(std::move(data)),
      cfg_(cfg) {
  prepacked_ = kernels::pack_weights(data_.view(), data_.formats.act, cfg_);
}

at::Tensor KernelLinear::forward(const at::Tensor& x) {
  const int64_t K = data_.in_features, N = data_.out_features;
  const size_t Kp = static_cast<size_t>(data_.padded_in());
  if (x.size(-1) != K)
    throw ModelError("\"" + name() + "\": input has " + std::to_string(x.size(-1)) +
                     " features, expected " + std::to_string(K));
  const at::Tensor x2 = x.reshape({-1, K}).to(at::kFloat).contiguous();
  const size_t M = static_cast<size_t>(x2.size(0));
  const MxFormat af = data_.formats.act;
  const float* src = x2.data_ptr<float>();
  std::vector<float> padded;
  if (Kp != static_cast<size_t>(K)) {
    padded.resize(M * Kp);
    kernels::pad_rows(src, M, K, padded.data());
    src = padded.data();
  }
  std::vector<uint8_t> codes(M * packed_bytes(af, Kp)), scales(M * Kp / kBlockSize);
  kernels::quantize(af, src, M, Kp, codes.data(), scales.data(), {}, cfg_);
  const kernels::MxMatrixView A{af, M, Kp, codes.data(), scales.data()};
  at::Tensor y = at::empty({static_cast<int64_t>(M), N}, at::kFloat);
  if (M == 1)
    kernels::gemv(A, data_.view(), y.data_ptr<float>(), cfg_);
  else
    kernels::gemm(A, prepacked_, y.data_ptr<float>(), static_cast<size_t>(N), cfg_);
  if (data_.bias.defined()) y.add_(data_.bias);
  std::vector<int64_t> shape = x.sizes().vec();
  shape.back() = N;
  return y.view(shape).to(x.scalar_type());
}

std::optional<Backend> parse_backend(const std::string& s) {
  if (s == "kernels") return Backend::Kernels;
  if (s == "fake-quant" || s == "torch") return Backend::FakeQuant;
  return std::nullopt;
}
const char* backend_name(Backend b) { return b == Backend::Kernels ? "kernels" : "fake-quant"; }

CausalLM build_model(PackedCheckpoint&& ck, Backend backend, at::ScalarType dtype,
                     const kernels::KernelConfig& cfg) {
  std::map<std::string, at::Tensor> w = std::move(ck.dense);
  std::map<std::string, LinearPtr> lins;
  for (auto& [name, d] : ck.linears) {
    if (backend == Backend::Kernels) {
      lins[name] = std::make_shared<KernelLinear>(std::move(d), cfg);
      continue;
    }
    at::Tensor full = at::empty({d.out_features, d.padded_in()}, at::kFloat);
    kernels::dequantize(d.view(), full.data_ptr<float>(), cfg);
    w[name + ".weight"] = full.slice(1, 0, d.in_features).contiguous();
    if (d.bias.defined()) w[name + ".bias"] = d.bias;
    d.codes = {};
    d.scales = {};
  }
  ck.linears.clear();
  try {
    CausalLM m(ck.config, std::move(w), std::move(lins), dtype);
    if (backend == Backend::FakeQuant) apply_fake_quant(m, ck.formats);
    return m;
  } catch (const ModelError& e) {
    throw ModelError(ck.dir + ": " + e.what());
  }
}

void use_kernel_backend(CausalLM& model, const FormatAssignment& a,
                        const kernels::KernelConfig& cfg) {
  at::NoGradGuard no_grad;
  for (const std::string& name : model.linear_names()) {
    auto it = a.find(name);
    if (it == a.end()) throw ModelError("no formats for decoder Linear \"" + name + "\"");
    LinearPtr l = model.linear(name);
    PackedLinearData d;
    d.name = name;
    d.formats = it->second;
    pack_weight(l->weight.detach(), d, cfg);
    if (l->bias.defined()) d.bias = l->bias.detach().to(at::kFloat).contiguous();
    model.set_linear(name, std::make_shared<KernelLinear>(std::move(d), cfg));
  }
}

CausalLM load_for_backend(const std::string& dir, const std::string& assignment, Backend backend,
                          at::ScalarType dtype, const kernels::KernelConfig& cfg) {
  if (is_packed_checkpoint(dir)) {
    if (!assignment.empty())
      throw ModelError(dir + ": a packed checkpoint carries its own formats; drop --assignment");
    return build_model(load_packed(dir), backend, dtype, cfg);
  }
  if (assignment.empty() && backend == Backend::Kernels)
    throw ModelError(dir + ": the kernel backend needs a packed checkpoint or an --assignment");
  CausalLM m = CausalLM::load(dir, dtype);
  if (assignment.empty()) return m;
  const std::string text = read_regular_file(assignment, "assignment", 64 << 20);
  const FormatAssignment a = parse_assignment(text, assignment, m.config());
  const std::optional<uint64_t> rotation = assignment_rotation(text, assignment);
  if (rotation && backend != Backend::FakeQuant)
    throw ModelError(assignment +
                     ": searched on a Hadamard-rotated model, which only the fake-quant backend "
                     "runs (its online transform has no packed form yet)");
  if (rotation) m.rotate_hadamard(*rotation);
  if (backend == Backend::FakeQuant)
    apply_fake_quant(m, a);
  else
    use_kernel_backend(m, a, cfg);
  return m;
}

// ---- Generation --------------------------------------------------------------------------------
double GenerateResult::prefill_tokens_per_s() const {
  return prefill_seconds > 0 ? static_cast<double>(prompt_tokens) / prefill_seconds : 0.0;
}
double GenerateResult::decode_tokens_per_s() const {
  return decode_seconds > 0 && tokens.size() > 1
             ? static_cast<double>(tokens.size() - 1) / decode_seconds
             : 0.0;
}

int32_t pick_token(const at::Tensor& logits_in, const GenerateOptions& opt, std::mt19937_64& rng) {
  const at::Tensor logits = logits_in.reshape({-1}).to(at::kFloat).contiguous();
  const float* z = logits.data_ptr<float>();
  const int64_t V = logits.numel();
  if (V == 0) throw std::invalid_argument("empty logits");
  if (opt.temperature <= 0) {
    int64_t best = 0;
    for (int64_t i = 1; i < V; ++i)
      if (z[i] > z[best]) best = i;  // lowest id on ties; NaN never wins
    return static_cast<int32_t>(best);
  }
  std::vector<int64_t> idx(V);
  for (int64_t i = 0; i < V; ++i) idx[i] = i;
  // Descending logit, ascending id on ties: a total order, so the candidate list is deterministic.
  auto cmp = [&](int64_t a, int64_t b) { return z[a] > z[b] || (z[a] == z[b] && a < b); };
  const int64_t k = opt.top_k > 0 ? std::min(opt.top_k, V) : V;
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), cmp);
  idx.resize(k);
  std::vector<double> p(k);
  double sum = 0;
  for (int64_t i = 0; i < k; ++i) {
    p[i] = std::exp((static_cast<double>(z[idx[i]]) - z[idx[0]]) / opt.temperature);
    sum += p[i];
  }
  int64_t keep = k;
  if (opt.top_p < 1.0) {
    double c = 0;
    for (int64_t i = 0; i < k; ++i) {
      c += p[i] / sum;
      if (c >= opt.top_p) {
        keep = i + 1;
        break;
      }
    }
  }
  double total = 0;
  for (int64_t i = 0; i < keep; ++i) total += p[i];
  const double u = static_cast<double>(rng() >> 11) * 0x1.0p-53 * total;
  double c = 0;
  for (int64_t i = 0; i < keep; ++i) {
    c += p[i];
    if (u < c) return static_cast<int32_t>(idx[i]);
  }
  return static_cast<int32_t>(idx[keep - 1]);
}

GenerateResult generate(const CausalLM& model, const std::vector<int32_t>& prompt,
                        const GenerateOptions& opt, const std::function<void(int32_t)>& on_token) {
  if (prompt.empty()) throw std::invalid_argument("empty prompt");
  at::NoGradGuard no_grad;
  GenerateResult r;
  r.prompt_tokens = static_cast<int64_t>(prompt.size());
  std::mt19937_64 rng(opt.seed);
  CausalLM::KVCache cache;
  at::Tensor ids = at::empty({1, r.prompt_tokens}, at::kLong);
  for (int64_t i = 0; i < r.prompt_tokens; ++i) ids.data_ptr<int64_t>()[i] = prompt[i];
  using clock = std::chrono::steady_clock;
  auto t0 = clock::now();
  at::Tensor logits = model.forward_cached(ids, cache, true);
  int32_t tok = pick_token(logits, opt, rng);
  r.prefill_seconds = std::chrono::duration<double>(clock::now() - t0).count();
  for (int64_t step = 0; step < opt.max_new_tokens; ++step) {
    if (step > 0) {  // decode time: the forward and the pick, not the caller's on_token
      const auto t1 = clock::now();
      at::Tensor one = at::full({1, 1}, static_cast<int64_t>(r.tokens.back()), at::kLong);
      tok = pick_token(model.forward_cached(one, cache, true), opt, rng);
      r.decode_seconds += std::chrono::duration<double>(clock::now() - t1).count();
    }
    r.tokens.push_back(tok);
    if (on_token) on_token(tok);
    if (std::find(opt.stop_ids.begin(), opt.stop_ids.end(), tok) != opt.stop_ids.end()) break;
  }
  return r;
}

}  // namespace dmx::quant
