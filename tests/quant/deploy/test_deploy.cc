// quant/deploy against golden: assignments, the packed-MX checkpoint (bit for bit against golden
// quantize_row + pack_codes of the original weights), its loader's validation, the kernel backend
// (every quantized Linear == golden dot_blocked + bias, bit for bit), the kernel backend's
// perplexity against the fake-quant path on the shipped models, KV-cache decoding and generation,
// and the dmx-export / dmx-eval / dmx-generate command lines.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "dmx/quant/config.h"
#include "dmx/quant/deploy.h"
#include "dmx/quant/eval.h"
#include "dmx/quant/mx.h"
#include "dmx/quant/safetensors.h"
#include "dmx/quant/tokenizer.h"

namespace fs = std::filesystem;
using namespace dmx;
using namespace dmx::quant;
using json = nlohmann::json;

namespace {

fs::path temp_dir(const std::string& name) {
  fs::path d =
      fs::temp_directory_path() / ("dmx_quant_deploy_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Llama with biases everywhere and in_features that are not multiples of 32 (80, 112): six layers,
// so the 42 decoder Linears carry all 36 (weight, activation) format pairs.
json llama_config() {
  return {{"architectures", {"LlamaForCausalLM"}},
          {"model_type", "llama"},
          {"hidden_size", 80},
          {"intermediate_size", 112},
          {"num_hidden_layers", 6},
          {"num_attention_heads", 4},
          {"num_key_value_heads", 2},
          {"vocab_size", 97},
          {"rms_norm_eps", 1e-5},
          {"rope_theta", 10000.0},
          {"tie_word_embeddings", false},
          {"attention_bias", true},
          {"mlp_bias", true},
          {"bos_token_id", 1},
          {"eos_token_id", 2}};
}
// Qwen3, tied embeddings, no biases.
json qwen3_config() {
  return {{"architectures", {"Qwen3ForCausalLM"}},
          {"model_type", "qwen3"},
          {"hidden_size", 64},
          {"intermediate_size", 96},
          {"num_hidden_layers", 2},
          {"num_attention_heads", 2},
          {"num_key_value_heads", 1},
          {"head_dim", 32},
          {"vocab_size", 70},
          {"rms_norm_eps", 1e-6},
          {"rope_theta", 1000000},
          {"tie_word_embeddings", true},
          {"attention_bias", false}};
}

// Every (weight, act) pair of the six formats, cycled over the model's Linears.
FormatAssignment all_pairs_assignment(const ModelConfig& c) {
  FormatAssignment a;
  size_t i = 0;
  for (const std::string& n : decoder_linear_names(c)) {
    a[n] = {kAllFormats[(i / kNumFormats) % kNumFormats], kAllFormats[i % kNumFormats]};
    ++i;
  }
  return a;
}

json assignment_json(const FormatAssignment& a) {
  json layers = json::array();
  for (const auto& [n, f] : a)
    layers.push_back({{"layer", n},
                      {"weight_format", format_name(f.weight)},
                      {"act_format", format_name(f.act)}});
  return {{"layers", layers}};
}

// A random checkpoint stored in BF16 (as the zoo models are), written by the test.
ModelConfig write_random_model(const fs::path& dir, const json& cfg_json, uint64_t seed) {
  const ModelConfig c = parse_config(cfg_json.dump(), "test config");
  CausalLM::random(c, seed, 0.08).save(dir.string(), at::kBFloat16);
  return c;
}

// Golden quantization of a weight [out, in] read from the source checkpoint (BF16 -> FP32 exact).
struct GoldenWeight {
  size_t out = 0, in = 0, kp = 0;
  std::vector<uint8_t> scales, codes;  // codes unpacked, one per byte, rows padded to kp
};
GoldenWeight golden_weight(const TensorView& v, MxFormat f) {
  EXPECT_EQ(v.dtype, DType::BF16);
  GoldenWeight g;
  g.out = static_cast<size_t>(v.shape[0]);
  g.in = static_cast<size_t>(v.shape[1]);
  g.kp = padded_length(g.in);
  g.scales.resize(g.out * g.kp / kBlockSize);
  g.codes.resize(g.out * g.kp);
  std::vector<float> row(g.kp);
  for (size_t r = 0; r < g.out; ++r) {
    std::fill(row.begin(), row.end(), 0.0f);
    for (size_t k = 0; k < g.in; ++k) {
      uint16_t b;
      std::memcpy(&b, v.data + 2 * (r * g.in + k), 2);
      row[k] = bf16_to_fp32(b);
    }
    quantize_row(f, row.data(), g.kp, g.scales.data() + r * g.kp / kBlockSize,
                 g.codes.data() + r * g.kp);
  }
  return g;
}

double gamma_n(double n) {
  const double u = std::ldexp(1.0, -24);
  return n * u / (1 - n * u);
}

const std::string kRepo = DMX_REPO;

}  // namespace

// ---- Assignments -------------------------------------------------------------------------------
TEST(DeployAssignment, ReadsDmxSearchOutput) {
  const ModelConfig c = load_config(kRepo + "/models/llama-tiny");
  const std::string path = kRepo + "/reports/dmx/llama-tiny-bits/runs/dmx_5.5/assignment.json";
  const FormatAssignment a = load_assignment(path, c);
  ASSERT_EQ(a.size(), decoder_linear_names(c).size());
  const json j = json::parse(read_file(path));
  for (const json& l : j["layers"]) {
    const ModuleFormats& f = a.at(l["layer"].get<std::string>());
    EXPECT_EQ(format_name(f.weight), l["weight_format"].get<std::string>());
    EXPECT_EQ(format_name(f.act), l["act_format"].get<std::string>());
  }
  EXPECT_NEAR(assignment_avg_bits(a), j["avg_bits"].get<double>(), 1e-12);
}

TEST(DeployAssignment, RejectsBadFilesWithOneLineMessages) {
  const ModelConfig c = parse_config(llama_config().dump(), "cfg");
  const json good = assignment_json(all_pairs_assignment(c));
  auto error_of = [&](const std::string& text) -> std::string {
    try {
      parse_assignment(text, "A.json", c);
    } catch (const std::runtime_error& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_NO_THROW(parse_assignment(good.dump(), "A.json", c));
  struct Bad {
    std::string text, needle;
  };
  json missing = good, unknown = good, twice = good, badfmt = good, noact = good;
  missing["layers"].erase(3);
  unknown["layers"][0]["layer"] = "model.layers.9.mlp.up_proj";
  twice["layers"][1]["layer"] = good["layers"][0]["layer"];
  badfmt["layers"][2]["act_format"] = "E9M9";
  noact["layers"][4].erase("act_format");
  const std::vector<Bad> bad = {{"{", "not valid JSON"},
                                {"{\"x\": 1}", "no \"layers\" array"},
                                {missing.dump(), "no formats for decoder Linear"},
                                {unknown.dump(), "is not a decoder Linear"},
                                {twice.dump(), "appears twice"},
                                {badfmt.dump(), "not an MX format"},
                                {noact.dump(), "lacks weight_format or act_format"}};
  for (const Bad& b : bad) {
    const std::string msg = error_of(b.text);
    EXPECT_NE(msg.find("A.json"), std::string::npos) << msg;
    EXPECT_NE(msg.find(b.needle), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

// ---- Export round trip -------------------------------------------------------------------------
TEST(DeployExport, PackedWeightsEqualGoldenQuantizationOfTheOriginal) {
  at::set_num_threads(1);
  for (const json& cj : {llama_config(), qwen3_config()}) {
    const fs::path d = temp_dir("roundtrip");
    const ModelConfig c = write_random_model(d / "src", cj, 11);
    const FormatAssignment a = all_pairs_assignment(c);
    const ExportStats st = export_packed((d / "src").string(), a, (d / "out").string());
    EXPECT_EQ(st.packed_linears, static_cast<int64_t>(a.size()));
    EXPECT_EQ(st.safetensors_bytes, fs::file_size(d / "out" / "model.safetensors"));
    EXPECT_FALSE(fs::exists(d / "src" / "tokenizer.json") ||
                 fs::exists(d / "out" / "tokenizer.json"));

    const Checkpoint src((d / "src").string());
    const SafetensorsFile out((d / "out" / "model.safetensors").string());
    size_t seen = 0;
    for (const auto& [name, f] : a) {
      SCOPED_TRACE(name + " " + format_name(f.weight));
      const GoldenWeight g = golden_weight(src.at(name + ".weight"), f.weight);
      const TensorView* b = out.find(name + ".weight_blocks");
      const TensorView* s = out.find(name + ".weight_scales");
      ASSERT_TRUE(b && s);
      const int64_t nb = static_cast<int64_t>(g.kp / kBlockSize);
      EXPECT_EQ(b->dtype, DType::U8);
      EXPECT_EQ(s->dtype, DType::U8);
      EXPECT_EQ(b->shape, (std::vector<int64_t>{static_cast<int64_t>(g.out), nb,
                                                static_cast<int64_t>(packed_bytes(f.weight, 32))}));
      EXPECT_EQ(s->shape, (std::vector<int64_t>{static_cast<int64_t>(g.out), nb}));
      ASSERT_EQ(s->nbytes, g.scales.size());
      EXPECT_EQ(std::memcmp(s->data, g.scales.data(), s->nbytes), 0);
      // Golden packing of golden codes, byte for byte; and golden's decode of the file's bytes.
      const size_t rb = packed_bytes(f.weight, g.kp);
      ASSERT_EQ(b->nbytes, g.out * rb);
      std::vector<uint8_t> packed(rb), unpacked(g.kp);
      std::vector<float> from_file(g.kp), from_golden(g.kp);
      for (size_t r = 0; r < g.out; ++r) {
        pack_codes(f.weight, g.codes.data() + r * g.kp, g.kp, packed.data());
        ASSERT_EQ(std::memcmp(b->data + r * rb, packed.data(), rb), 0) << "row " << r;
        unpack_codes(f.weight, b->data + r * rb, g.kp, unpacked.data());
        dequantize_row(f.weight, s->data + r * nb, unpacked.data(), g.kp, from_file.data());
        dequantize_row(f.weight, g.scales.data() + r * nb, g.codes.data() + r * g.kp, g.kp,
                       from_golden.data());
        ASSERT_EQ(std::memcmp(from_file.data(), from_golden.data(), g.kp * 4), 0) << "row " << r;
      }
      seen += 2;
    }
    // Every other tensor byte for byte in its dtype (BF16); no lm_head copy when tied.
    for (const auto& [name, shape] : expected_tensor_shapes(c)) {
      const std::string module = name.substr(0, name.rfind('.'));
      if (a.count(module) && name.compare(name.size() - 7, 7, ".weight") == 0) continue;
      const TensorView* o = out.find(name);
      ASSERT_TRUE(o) << name;
      const TensorView& i = src.at(name);
      EXPECT_EQ(o->dtype, i.dtype) << name;
      EXPECT_EQ(o->shape, i.shape) << name;
      ASSERT_EQ(o->nbytes, i.nbytes) << name;
      EXPECT_EQ(std::memcmp(o->data, i.data, i.nbytes), 0) << name;
      ++seen;
    }
    EXPECT_EQ(seen, out.tensors().size());
    // config.json: the model config unchanged, plus the versioned quantization_config.
    const json cfg = json::parse(read_file(d / "out" / "config.json"));
    EXPECT_EQ(cfg["hidden_size"], cj["hidden_size"]);
    const json& q = cfg["quantization_config"];
    EXPECT_EQ(q["quant_method"], "dmx_mx");
    EXPECT_EQ(q["format_version"], 1);
    EXPECT_EQ(q["block_size"], 32);
    EXPECT_EQ(q["scale_rule"], "floor");
    for (const auto& [name, f] : a) {
      EXPECT_EQ(q["modules"][name]["weight_format"], format_name(f.weight));
      EXPECT_EQ(q["modules"][name]["act_format"], format_name(f.act));
    }
    // The loader gives back the same formats and bytes.
    PackedCheckpoint ck = load_packed((d / "out").string());
    ASSERT_EQ(ck.linears.size(), a.size());
    for (const auto& [name, f] : a) {
      EXPECT_EQ(ck.formats.at(name).weight, f.weight);
      EXPECT_EQ(ck.formats.at(name).act, f.act);
      const TensorView* b = out.find(name + ".weight_blocks");
      EXPECT_EQ(std::memcmp(ck.linears.at(name).codes.data(), b->data, b->nbytes), 0);
    }
    fs::remove_all(d);
  }
}

TEST(DeployExport, RefusesNaNWeightsAndExistingOutputWithoutPartialFiles) {
  at::set_num_threads(1);
  const fs::path d = temp_dir("export_err");
  const ModelConfig c = write_random_model(d / "src", qwen3_config(), 5);
  const FormatAssignment a = uniform_assignment(c, MxFormat::E2M1, MxFormat::E2M1);
  // A NaN in one weight: error naming the tensor, nothing written.
  {
    CausalLM m = CausalLM::load((d / "src").string());
    m.linear("model.layers.1.mlp.up_proj")->weight[3][7] = std::nanf("");
    m.save((d / "nan").string(), at::kFloat);
    try {
      export_packed((d / "nan").string(), a, (d / "out_nan").string());
      ADD_FAILURE() << "no error";
    } catch (const std::exception& e) {
      EXPECT_NE(std::string(e.what()).find("model.layers.1.mlp.up_proj"), std::string::npos)
          << e.what();
    }
    EXPECT_FALSE(fs::exists(d / "out_nan"));
    for (const auto& e : fs::directory_iterator(d))
      EXPECT_EQ(e.path().filename().string().find(".tmp."), std::string::npos) << e.path();
  }
  // An existing non-empty directory is kept unless overwrite is asked for.
  fs::create_directories(d / "busy");
  std::ofstream(d / "busy" / "keep.txt") << "x";
  EXPECT_THROW(export_packed((d / "src").string(), a, (d / "busy").string()), ModelError);
  EXPECT_TRUE(fs::exists(d / "busy" / "keep.txt"));
  ExportOptions o;
  o.overwrite = true;
  export_packed((d / "src").string(), a, (d / "busy").string(), o);
  EXPECT_FALSE(fs::exists(d / "busy" / "keep.txt"));
  EXPECT_TRUE(is_packed_checkpoint((d / "busy").string()));
  fs::remove_all(d);
}

// ---- Loader validation -------------------------------------------------------------------------
TEST(DeployLoad, RejectsMalformedCheckpointsNamingTheProblem) {
  at::set_num_threads(1);
  const fs::path d = temp_dir("load_err");
  const ModelConfig c = write_random_model(d / "src", llama_config(), 3);
  const FormatAssignment a = all_pairs_assignment(c);
  export_packed((d / "src").string(), a, (d / "good").string());
  ASSERT_NO_THROW(load_packed((d / "good").string()));
  const json cfg = json::parse(read_file(d / "good" / "config.json"));
  const std::string st = read_file(d / "good" / "model.safetensors");

  // Variants of config.json.
  auto with_config = [&](const std::string& name, const json& j) {
    fs::create_directories(d / name);
    std::ofstream(d / name / "config.json") << j.dump();
    fs::copy_file(d / "good" / "model.safetensors", d / name / "model.safetensors",
                  fs::copy_options::overwrite_existing);
    return (d / name).string();
  };
  // Variants of the tensors: edit, drop or add one, rewrite the file.
  auto with_tensors = [&](const std::string& name,
                          const std::function<void(std::vector<TensorToWrite>&,
                                                   std::vector<std::vector<uint8_t>>&)>& edit) {
    fs::create_directories(d / name);
    std::ofstream(d / name / "config.json") << cfg.dump();
    SafetensorsFile f((d / "good" / "model.safetensors").string());
    std::vector<std::vector<uint8_t>> bufs;
    std::vector<TensorToWrite> ts;
    bufs.reserve(f.tensors().size() + 4);
    for (const TensorView& v : f.tensors()) {
      bufs.emplace_back(v.data, v.data + v.nbytes);
      ts.push_back({v.name, v.dtype, v.shape, nullptr, v.nbytes});
    }
    edit(ts, bufs);
    for (size_t i = 0; i < ts.size(); ++i) ts[i].data = bufs[i].data();
    write_safetensors((d / name / "model.safetensors").string(), ts);
    return (d / name).string();
  };
  auto index_of = [](const std::vector<TensorToWrite>& ts, const std::string& n) {
    for (size_t i = 0; i < ts.size(); ++i)
      if (ts[i].name == n) return i;
    throw std::runtime_error("no " + n);
  };
  const std::string q = "model.layers.2.self_attn.k_proj";
  std::string fp8_layer;
  for (const auto& [n, f] : a)
    if (f.weight == MxFormat::E4M3) fp8_layer = n;
  ASSERT_FALSE(fp8_layer.empty());

  struct Case {
    std::string dir, needle;
  };
  std::vector<Case> cases;
  {
    json j = cfg;
    j["quantization_config"]["format_version"] = 2;
    cases.push_back({with_config("v2", j), "format_version 2 is not supported"});
    j = cfg;
    j["quantization_config"]["quant_method"] = "mxfp4";
    cases.push_back({with_config("method", j), "quant_method"});
    j = cfg;
    j["quantization_config"]["block_size"] = 16;
    cases.push_back({with_config("bs", j), "block_size"});
    j = cfg;
    j["quantization_config"]["scale_rule"] = "rceil";
    cases.push_back({with_config("rule", j), "scale_rule"});
    j = cfg;
    j["quantization_config"]["modules"].erase(q);
    cases.push_back({with_config("nomod", j), q});
    j = cfg;
    j["quantization_config"]["modules"][q]["weight_format"] = "fp3";
    cases.push_back({with_config("fmt", j), "not an MX format"});
    j = cfg;
    j["quantization_config"]["modules"][q]["weight_format"] = "E5M2";  // shape differs from E2M1
    if (a.at(q).weight != MxFormat::E5M2 && packed_bytes(a.at(q).weight, 32) != 32)
      cases.push_back({with_config("fmtshape", j), q + ".weight_blocks\" has shape"});
  }
  cases.push_back({with_tensors("missing",
                                [&](auto& ts, auto& bufs) {
                                  const size_t i = index_of(ts, q + ".weight_scales");
                                  ts.erase(ts.begin() + i);
                                  bufs.erase(bufs.begin() + i);
                                }),
                   "lacks tensor \"" + q + ".weight_scales\""});
  cases.push_back({with_tensors("dtype",
                                [&](auto& ts, auto&) {
                                  const size_t i = index_of(ts, q + ".weight_scales");
                                  ts[i].dtype = DType::I8;
                                }),
                   q + ".weight_scales\" has dtype I8"});
  cases.push_back({with_tensors("shape",
                                [&](auto& ts, auto&) {
                                  const size_t i = index_of(ts, q + ".weight_scales");
                                  ts[i].shape = {ts[i].shape[1], ts[i].shape[0]};
                                }),
                   q + ".weight_scales\" has shape"});
  cases.push_back({with_tensors("nanscale",
                                [&](auto& ts, auto& bufs) {
                                  bufs[index_of(ts, q + ".weight_scales")][5] = 0xFF;
                                }),
                   "NaN scale 0xFF"});
  cases.push_back({with_tensors("nancode",
                                [&](auto& ts, auto& bufs) {
                                  bufs[index_of(ts, fp8_layer + ".weight_blocks")][9] = 0x7F;
                                }),
                   fp8_layer + ".weight_blocks\" holds a NaN/Inf E4M3 code"});
  cases.push_back(
      {with_tensors(
           "extra",
           [&](auto& ts, auto& bufs) {
             bufs.emplace_back(4, 0);
             ts.push_back({"model.layers.0.mlp.up_proj.weight", DType::F32, {1}, nullptr, 4});
           }),
       "unexpected tensor \"model.layers.0.mlp.up_proj.weight\""});
  cases.push_back({with_tensors("densedtype",
                                [&](auto& ts, auto&) {
                                  const size_t i = index_of(ts, "model.norm.weight");
                                  ts[i].dtype = DType::I16;
                                }),
                   "model.norm.weight\" has dtype I16"});
  {
    fs::create_directories(d / "badjson");
    std::ofstream(d / "badjson" / "config.json") << "{ not json";
    cases.push_back({(d / "badjson").string(), "not valid JSON"});
    fs::create_directories(d / "trunc");
    std::ofstream(d / "trunc" / "config.json") << cfg.dump();
    std::ofstream(d / "trunc" / "model.safetensors", std::ios::binary)
        << st.substr(0, st.size() - 100);
    cases.push_back({(d / "trunc").string(), "model.safetensors"});
  }
  for (const Case& k : cases) {
    SCOPED_TRACE(k.dir);
    try {
      load_packed(k.dir);
      ADD_FAILURE() << "no error";
    } catch (const std::exception& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(k.dir), std::string::npos) << msg;
      EXPECT_NE(msg.find(k.needle), std::string::npos) << msg;
      EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    }
  }
  fs::remove_all(d);
}

// ---- Kernel backend: bit for bit against golden ------------------------------------------------
TEST(DeployKernelBackend, EveryQuantizedLinearEqualsGoldenDotBlocked) {
  at::set_num_threads(1);
  const uint64_t seed = 2024;
  SCOPED_TRACE("seed " + std::to_string(seed));
  const fs::path d = temp_dir("bitexact");
  const ModelConfig c = write_random_model(d / "src", llama_config(), seed);
  const FormatAssignment a = all_pairs_assignment(c);
  export_packed((d / "src").string(), a, (d / "out").string());
  const CausalLM m = build_model(load_packed((d / "out").string()), Backend::Kernels);
  const Checkpoint src((d / "src").string());
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::uniform_int_distribution<int> ex(-6, 6);
  size_t checked = 0;
  for (const auto& [name, f] : a) {
    SCOPED_TRACE(name + " W " + format_name(f.weight) + " A " + format_name(f.act));
    auto lin = std::dynamic_pointer_cast<KernelLinear>(m.linear(name));
    ASSERT_TRUE(lin);
    const GoldenWeight g = golden_weight(src.at(name + ".weight"), f.weight);
    std::vector<float> bias(g.out, 0.0f);
    const TensorView& bv = src.at(name + ".bias");
    for (size_t n = 0; n < g.out; ++n) {
      uint16_t b;
      std::memcpy(&b, bv.data + 2 * n, 2);
      bias[n] = bf16_to_fp32(b);
    }
    for (int64_t M : {1, 3, 17}) {  // GEMV, GEMM below and above a 4-row group multiple
      // Rows at different magnitudes (one row 2^e per row), some exact zeros.
      at::Tensor x = at::empty({M, static_cast<int64_t>(g.in)}, at::kFloat);
      float* px = x.data_ptr<float>();
      for (int64_t r = 0; r < M; ++r) {
        const float s = std::ldexp(1.0f, ex(rng));
        for (size_t k = 0; k < g.in; ++k) px[r * g.in + k] = (rng() % 11 == 0) ? 0.0f : s * nd(rng);
      }
      const at::Tensor y = lin->forward(x);
      ASSERT_EQ(y.scalar_type(), at::kFloat);
      ASSERT_EQ(y.sizes(), (at::IntArrayRef{M, static_cast<int64_t>(g.out)}));
      const float* py = y.data_ptr<float>();
      std::vector<float> row(g.kp);
      std::vector<uint8_t> as(g.kp / kBlockSize), ac(g.kp);
      for (int64_t r = 0; r < M; ++r) {
        std::fill(row.begin(), row.end(), 0.0f);
        std::memcpy(row.data(), px + r * g.in, g.in * 4);
        quantize_row(f.act, row.data(), g.kp, as.data(), ac.data());
        const MxVector av{f.act, as.data(), ac.data()};
        for (size_t n = 0; n < g.out; ++n) {
          const MxVector wv{f.weight, g.scales.data() + n * g.kp / kBlockSize,
                            g.codes.data() + n * g.kp};
          const float want = dot_blocked(av, wv, g.kp) + bias[n];
          ASSERT_EQ(fp32_bits(py[r * g.out + n]), fp32_bits(want))
              << "M " << M << " row " << r << " col " << n << ": " << py[r * g.out + n]
              << " vs golden " << want;
        }
      }
      ++checked;
    }
  }
  EXPECT_EQ(checked, 3 * a.size());
  fs::remove_all(d);
}

// Same for a model quantized at load time from the FP32 weights (dmx-eval --assignment --backend
// kernels): the same Linears as from the packed checkpoint, bit for bit.
TEST(DeployKernelBackend, LoadTimeQuantizationEqualsPackedCheckpoint) {
  at::set_num_threads(1);
  const fs::path d = temp_dir("loadtime");
  const ModelConfig c = write_random_model(d / "src", qwen3_config(), 9);
  const FormatAssignment a = all_pairs_assignment(c);
  std::ofstream(d / "a.json") << assignment_json(a).dump();
  export_packed((d / "src").string(), a, (d / "out").string());
  const CausalLM p = load_for_backend((d / "out").string(), "", Backend::Kernels);
  const CausalLM q =
      load_for_backend((d / "src").string(), (d / "a.json").string(), Backend::Kernels);
  at::Tensor ids = at::arange(13, at::kLong).unsqueeze(0) * 5 % c.vocab_size;
  at::NoGradGuard ng;
  EXPECT_TRUE(at::equal(p.forward(ids), q.forward(ids)));
  for (const std::string& n : decoder_linear_names(c)) {
    auto kp = std::dynamic_pointer_cast<KernelLinear>(p.linear(n));
    auto kq = std::dynamic_pointer_cast<KernelLinear>(q.linear(n));
    ASSERT_TRUE(kp && kq);
    EXPECT_EQ(kp->data().codes, kq->data().codes) << n;
    EXPECT_EQ(kp->data().scales, kq->data().scales) << n;
  }
  fs::remove_all(d);
}

// ---- Perplexity: kernel backend vs fake quantization on the shipped models ----------------------
// Wraps a kernel Linear and the fake-quant Linear of the same layer: returns the kernel's output
// and checks, at every call on the model's real activations, the rounding bound between them.
// Both sum the same exact products a_k w_k (+ bias) in FP32 in different orders, so each output
// differs from the exact sum by at most gamma(K+1) * (sum |a_k w_k| + |b|), and the two from each
// other by twice that.
class CheckedLinear : public Linear {
 public:
  CheckedLinear(std::shared_ptr<KernelLinear> k, LinearPtr f)
      : Linear(k->name(), k->weight, k->bias), k_(std::move(k)), f_(std::move(f)) {
    wq_t_ = mx_fake_quant(f_->weight, k_->data().formats.weight).to(at::kDouble).abs().t();
  }
  at::Tensor forward(const at::Tensor& x) override {
    const at::Tensor yk = k_->forward(x);
    const at::Tensor yf = f_->forward(x);
    const ModuleFormats& fm = k_->data().formats;
    const at::Tensor aq = mx_fake_quant(x, fm.act).to(at::kDouble).abs();
    at::Tensor s = at::matmul(aq, wq_t_);
    if (f_->bias.defined()) s = s + f_->bias.to(at::kDouble).abs();
    const double g = 2 * gamma_n(static_cast<double>(k_->in_features() + 1));
    const at::Tensor diff = (yk.to(at::kDouble) - yf.to(at::kDouble)).abs();
    const double ratio = (diff / (g * s + 1e-300)).max().item<double>();
    max_ratio = std::max(max_ratio, ratio);
    rel_sum += (diff / (s + 1e-300)).sum().item<double>();
    count += diff.numel();
    if (ratio > 1.0) ++violations;
    return yk;
  }
  static inline double max_ratio = 0, rel_sum = 0;
  static inline int64_t count = 0, violations = 0;

 private:
  std::shared_ptr<KernelLinear> k_;
  LinearPtr f_;
  at::Tensor wq_t_;  // |quantized weight|^T in FP64
};

// Tolerance on |mean NLL(kernels) - mean NLL(fake-quant)| in nats (derivation:
// quant/deploy/README.md, "Perplexity agreement").
constexpr double kNllTolerance = 1e-3;

class DeployPerplexity : public ::testing::TestWithParam<std::string> {};

// Per shipped model and assignment (all-MXFP4, all-MXFP8, the searched dmx 5.5-bit mix of
// reports/dmx): mean NLL over 8 windows of 256 tokens of wiki.test.raw on the kernel backend (from
// the exported checkpoint) and on the fake-quant path (the original model + assignment, as
// dmx-search evaluates), within kNllTolerance; every Linear call of the first 2 windows checked
// against its fake-quant twin with the rounding bound above; and, for the mix, the fake-quant
// model rebuilt from the packed checkpoint gives the original's NLL exactly.
TEST_P(DeployPerplexity, KernelBackendAgreesWithFakeQuant) {
  at::set_num_threads(1);
  const std::string model = GetParam();
  const fs::path d = temp_dir("ppl_" + model);
  PerplexityOptions opt;
  opt.seqlen = 256;
  opt.max_windows = 8;
  PerplexityOptions check_opt = opt;
  check_opt.max_windows = 2;
  const std::string mdir = kRepo + "/models/" + model;
  const ModelConfig c = load_config(mdir);
  const Tokenizer tok = Tokenizer::load(mdir);
  std::vector<int32_t> tokens = tok.encode(read_file(kRepo + "/data/wiki.test.raw"));
  tokens.resize(opt.seqlen * opt.max_windows);
  const std::string mix = kRepo + "/reports/dmx/" + model + "-bits/runs/dmx_5.5/assignment.json";
  std::map<std::string, double> fq_nll;
  for (const std::string which : {"mxfp4", "mxfp8", "mix"}) {
    SCOPED_TRACE(model + " " + which);
    const FormatAssignment a =
        which == "mxfp4"   ? uniform_assignment(c, MxFormat::E2M1, MxFormat::E2M1)
        : which == "mxfp8" ? uniform_assignment(c, MxFormat::E4M3, MxFormat::E4M3)
                           : load_assignment(mix, c);
    const std::string out = (d / which).string();
    export_packed(mdir, a, out);
    CausalLM orig = CausalLM::load(mdir);
    apply_fake_quant(orig, a);
    const double nll_fq = perplexity(orig, tokens, opt).mean_nll;
    const CausalLM fq = build_model(load_packed(out), Backend::FakeQuant);
    if (which == "mix") {
      EXPECT_EQ(perplexity(fq, tokens, opt).mean_nll, nll_fq);
    }
    CausalLM k = build_model(load_packed(out), Backend::Kernels);
    const double nll_k = perplexity(k, tokens, opt).mean_nll;
    // The same kernel Linears, each call checked against the fake-quant Linear.
    for (const std::string& n : k.linear_names())
      k.set_linear(n, std::make_shared<CheckedLinear>(
                          std::dynamic_pointer_cast<KernelLinear>(k.linear(n)), fq.linear(n)));
    CheckedLinear::max_ratio = CheckedLinear::rel_sum = 0;
    CheckedLinear::count = CheckedLinear::violations = 0;
    perplexity(k, tokens, check_opt);
    EXPECT_EQ(CheckedLinear::violations, 0) << "max |diff| / bound " << CheckedLinear::max_ratio;
    EXPECT_GT(CheckedLinear::count, 0);
    std::printf(
        "%s %-6s NLL fake-quant %.7f kernels %.7f |diff| %.2e nats; per-Linear max "
        "|diff|/bound %.4f, mean |diff|/sum|aw| %.2e\n",
        model.c_str(), which.c_str(), nll_fq, nll_k, std::fabs(nll_k - nll_fq),
        CheckedLinear::max_ratio,
        CheckedLinear::rel_sum / static_cast<double>(CheckedLinear::count));
    EXPECT_LE(std::fabs(nll_k - nll_fq), kNllTolerance);
    fq_nll[which] = nll_fq;
    fs::remove_all(out);
  }
  // The tolerance separates formats: all-MXFP4 and all-MXFP8 differ by more than 10x.
  EXPECT_GT(std::fabs(fq_nll["mxfp4"] - fq_nll["mxfp8"]), 10 * kNllTolerance);
  fs::remove_all(d);
}
INSTANTIATE_TEST_SUITE_P(ShippedModels, DeployPerplexity,
                         ::testing::Values("llama-tiny", "qwen3-tiny", "smollm2-tiny"),
                         [](const auto& info) {
                           std::string n = info.param;
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

// ---- KV cache and generation -------------------------------------------------------------------
TEST(DeployGenerate, KvCacheLogitsMatchFullForward) {
  at::set_num_threads(1);
  for (const json& cj : {llama_config(), qwen3_config()}) {
    const ModelConfig c = parse_config(cj.dump(), "cfg");
    const CausalLM m = CausalLM::random(c, 17, 0.1);
    at::NoGradGuard ng;
    const at::Tensor ids = at::arange(12, at::kLong).unsqueeze(0) * 7 % c.vocab_size;
    const at::Tensor full = m.forward(ids);  // [1, 12, V]
    CausalLM::KVCache cache;
    // Prefill 5, then 1, then 4 at once, then 2 single steps.
    std::vector<at::Tensor> parts;
    int64_t p = 0;
    for (int64_t n : {5, 1, 4, 1, 1}) {
      parts.push_back(m.forward_cached(ids.slice(1, p, p + n), cache, false));
      p += n;
      EXPECT_EQ(cache.length, p);
    }
    const at::Tensor inc = at::cat(parts, 1);
    EXPECT_TRUE(at::allclose(inc, full, 1e-4, 1e-5)) << (inc - full).abs().max().item<double>();
    CausalLM::KVCache c2;
    const at::Tensor last = m.forward_cached(ids, c2, true);
    EXPECT_EQ(last.sizes(), (at::IntArrayRef{1, 1, c.vocab_size}));
    EXPECT_TRUE(at::allclose(last[0][0], full[0][11], 1e-4, 1e-5));
  }
}

TEST(DeployGenerate, GreedyIsDeterministicAndEqualsArgmaxOfFullForward) {
  at::set_num_threads(1);
  const fs::path d = temp_dir("gen");
  const std::string mdir = kRepo + "/models/llama-tiny";
  const std::string mix = kRepo + "/reports/dmx/llama-tiny-bits/runs/dmx_5.5/assignment.json";
  export_packed(mdir, load_assignment(mix, load_config(mdir)), (d / "p").string());
  const CausalLM m = load_for_backend((d / "p").string(), "", Backend::Kernels);
  const Tokenizer tok = Tokenizer::load((d / "p").string());
  const std::vector<int32_t> prompt = tok.encode("The history of the city begins");
  GenerateOptions g;
  g.max_new_tokens = 24;
  const GenerateResult r1 = generate(m, prompt, g);
  const GenerateResult r2 = generate(m, prompt, g);
  ASSERT_EQ(r1.tokens.size(), 24u);
  EXPECT_EQ(r1.tokens, r2.tokens);
  // Each greedy token is the argmax of a full (cache-free) forward over everything before it,
  // unless the top two logits are closer than the cache-vs-full difference can move them.
  std::vector<int32_t> seq = prompt;
  at::NoGradGuard ng;
  for (int32_t t : r1.tokens) {
    at::Tensor ids = at::empty({1, static_cast<int64_t>(seq.size())}, at::kLong);
    for (size_t i = 0; i < seq.size(); ++i) ids.data_ptr<int64_t>()[i] = seq[i];
    const at::Tensor z = m.forward(ids)[0][-1];
    const auto top = at::topk(z, 2);
    const int64_t best = std::get<1>(top)[0].item<int64_t>();
    const double gap = (std::get<0>(top)[0] - std::get<0>(top)[1]).item<double>();
    if (gap > 1e-3) {
      EXPECT_EQ(t, best) << "position " << seq.size();
    }
    seq.push_back(t);
  }
  // Sampling: the same seed gives the same tokens; the tokens stay in the vocabulary.
  g.temperature = 0.9;
  g.top_k = 20;
  g.top_p = 0.95;
  g.seed = 77;
  const GenerateResult s1 = generate(m, prompt, g), s2 = generate(m, prompt, g);
  EXPECT_EQ(s1.tokens, s2.tokens) << "seed 77";
  for (int32_t t : s1.tokens) EXPECT_LT(t, m.config().vocab_size);
  EXPECT_GT(r1.decode_tokens_per_s(), 0.0);
  EXPECT_GT(r1.prefill_tokens_per_s(), 0.0);
  fs::remove_all(d);
}

TEST(DeployGenerate, SamplingFollowsTheDistribution) {
  // pick_token against the softmax it should sample: 20000 draws, fixed seed, chi-square bound.
  const uint64_t seed = 123;
  at::Tensor z = at::tensor({2.0f, 1.0f, 0.5f, -1.0f, 0.0f, 1.5f});
  GenerateOptions g;
  g.temperature = 0.7;
  g.top_k = 4;  // keeps ids 0, 5, 1, 2
  std::mt19937_64 rng(seed);
  std::vector<int> counts(6, 0);
  const int n = 20000;
  for (int i = 0; i < n; ++i) ++counts[pick_token(z, g, rng)];
  EXPECT_EQ(counts[3] + counts[4], 0);
  const std::vector<int> kept = {0, 5, 1, 2};
  double zsum = 0;
  for (int i : kept) zsum += std::exp(z[i].item<double>() / g.temperature);
  double chi2 = 0;
  for (int i : kept) {
    const double e = n * std::exp(z[i].item<double>() / g.temperature) / zsum;
    chi2 += (counts[i] - e) * (counts[i] - e) / e;
  }
  EXPECT_LT(chi2, 16.27) << "seed " << seed;  // chi-square, 3 degrees of freedom, p = 0.001
  g.temperature = 0;
  EXPECT_EQ(pick_token(z, g, rng), 0);
  EXPECT_EQ(pick_token(at::tensor({1.0f, 3.0f, 3.0f}), g, rng), 1);  // lowest id on ties
}

// ---- Command lines -----------------------------------------------------------------------------
#if defined(DMX_EXPORT_BIN) && defined(DMX_EVAL_BIN) && defined(DMX_GENERATE_BIN)
namespace {
int run(const std::string& cmd) {
  const int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}
}  // namespace

TEST(DeployCli, SearchExportGenerateAndErrors) {
  const fs::path d = temp_dir("cli");
  const std::string ex = DMX_EXPORT_BIN, ev = DMX_EVAL_BIN, gen = DMX_GENERATE_BIN;
  const std::string mdir = kRepo + "/models/qwen3-tiny";
  const std::string mix = kRepo + "/reports/dmx/qwen3-tiny-bits/runs/dmx_5.5/assignment.json";
  const std::string data = kRepo + "/data/wiki.test.raw";
  const std::string out = (d / "q").string();
  ASSERT_EQ(run(ex + " --model " + mdir + " --assignment " + mix + " --out " + out +
                " --quiet --threads 1"),
            0);
  ASSERT_TRUE(is_packed_checkpoint(out));
  // dmx-eval: the packed checkpoint on both backends and the original model + assignment.
  auto ppl = [&](const std::string& args, const std::string& tag) {
    const std::string js = (d / (tag + ".json")).string();
    EXPECT_EQ(run(ev + " " + args + " --data " + data +
                  " --seqlen 128 --max-windows 4 --threads 1 --quiet --out " + js + " > /dev/null"),
              0)
        << args;
    return json::parse(read_file(js));
  };
  const json a = ppl("--model " + mdir + " --assignment " + mix, "orig_fq");
  const json b = ppl("--model " + out, "packed_fq");
  const json k = ppl("--model " + out + " --backend kernels", "packed_k");
  const json k2 = ppl("--model " + mdir + " --assignment " + mix + " --backend kernels", "orig_k");
  EXPECT_EQ(a["mean_nll"], b["mean_nll"]);
  EXPECT_EQ(k["mean_nll"], k2["mean_nll"]);
  EXPECT_NEAR(k["mean_nll"].get<double>(), a["mean_nll"].get<double>(), kNllTolerance);
  EXPECT_EQ(k["backend"], "kernels");
  EXPECT_TRUE(k["packed_checkpoint"].get<bool>());
  // dmx-generate: greedy twice -> same ids; a tokens/s line on stderr.
  const std::string g = gen + " --model " + out + " --prompt 'The city of' --max-new-tokens 12 " +
                        "--threads 1 --ids --ignore-eos";
  ASSERT_EQ(run(g + " > " + (d / "g1").string() + " 2> " + (d / "g1.err").string()), 0);
  ASSERT_EQ(run(g + " > " + (d / "g2").string() + " 2>/dev/null"), 0);
  EXPECT_EQ(read_file(d / "g1"), read_file(d / "g2"));
  std::istringstream ids(read_file(d / "g1"));
  int n = 0;
  for (int t; ids >> t;) ++n;
  EXPECT_EQ(n, 12);
  EXPECT_NE(read_file(d / "g1.err").find("tokens/s"), std::string::npos);

  // Errors: usage -> 2, failures -> 1 with one line naming the input; no partial output.
  EXPECT_EQ(run(ex + " --model " + mdir + " --out " + (d / "x").string() + " 2>/dev/null"), 2);
  EXPECT_EQ(
      run(ex + " --model " + mdir + " --format e9m9 --out " + (d / "x").string() + " 2>/dev/null"),
      2);
  EXPECT_EQ(run(ex + " --bogus 2>/dev/null"), 2);
  EXPECT_EQ(run(ev + " --model " + out + " --data " + data + " --backend gpu 2>/dev/null"), 2);
  EXPECT_EQ(run(gen + " --model " + out + " 2>/dev/null"), 2);
  std::ofstream(d / "bad.json") << "{\"layers\": [";
  const std::string err = (d / "err").string();
  EXPECT_EQ(run(ex + " --model " + mdir + " --assignment " + (d / "bad.json").string() + " --out " +
                (d / "x").string() + " 2> " + err),
            1);
  std::string msg = read_file(err);
  EXPECT_NE(msg.find("bad.json"), std::string::npos) << msg;
  EXPECT_EQ(std::count(msg.begin(), msg.end(), '\n'), 1) << msg;
  EXPECT_FALSE(fs::exists(d / "x"));
  EXPECT_EQ(run(ex + " --model " + (d / "nope").string() + " --format e2m1 --out " +
                (d / "x").string() + " 2> " + err),
            1);
  EXPECT_NE(read_file(err).find("nope"), std::string::npos);
  EXPECT_FALSE(fs::exists(d / "x"));
  EXPECT_EQ(run(ex + " --model " + mdir + " --format e2m1 --out " + out + " 2> " + err), 1);
  EXPECT_NE(read_file(err).find("not empty"), std::string::npos);
  EXPECT_EQ(run(ev + " --model " + out + " --assignment " + mix + " --data " + data + " 2> " + err),
            1);
  EXPECT_NE(read_file(err).find("carries its own formats"), std::string::npos);
  EXPECT_EQ(run(gen + " --model " + mdir + " --prompt hi 2> " + err), 1);
  EXPECT_NE(read_file(err).find("needs a packed checkpoint or an --assignment"), std::string::npos);
  fs::remove_all(d);
}
#endif
