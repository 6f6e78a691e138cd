// quant/deploy's files against golden: assignments, the packed-MX checkpoint (bit for bit against
// golden quantize_row + pack_codes of the original weights) and its loader's validation.
#include "deploy_test_util.h"

using namespace deploy_test;

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
