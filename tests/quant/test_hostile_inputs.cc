// Hostile inputs to the checkpoint, config and tokenizer readers: each gets one clear error naming
// the file, at once and without unbounded memory, never a crash, a hang or a silently wrong value.
#include <dmx/quant/config.h>
#include <dmx/quant/memory.h>
#include <dmx/quant/safetensors.h>
#include <dmx/quant/search_checkpoint.h>
#include <dmx/quant/tokenizer.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tiny_tokenizer.h"

using namespace dmx::quant;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

fs::path scratch(const std::string& name) {
  fs::path d =
      fs::temp_directory_path() / ("dmx_hostile_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

void write(const fs::path& p, const std::string& text) {
  std::ofstream(p, std::ios::binary) << text;
}

// A minimal byte-level tokenizer: the 256 byte symbols (ids 0..255) and one added token.
json base_tokenizer() {
  return json::parse(dmx::quant::testing::tiny_tokenizer(
      {{"type", "ByteLevel"}, {"add_prefix_space", false}}, json::array(), json::array()));
}

std::string tokenizer_error(const std::string& text) {
  try {
    Tokenizer::from_json(text, "tok.json");
  } catch (const TokenizerError& e) {
    return e.what();
  }
  return "(accepted)";
}

TEST(HostileTokenizer, BaseTokenizerIsAccepted) {
  EXPECT_EQ(tokenizer_error(base_tokenizer().dump()), "(accepted)");
}

// Item 1: a normalizer (or pre-tokenizer) Sequence nested 100,000 deep crashed with SIGSEGV.
TEST(HostileTokenizer, DeeplyNestedSequencesAreRefused) {
  for (const std::string section : {"normalizer", "pre_tokenizer"}) {
    const std::string list = section == "normalizer" ? "normalizers" : "pretokenizers";
    std::string nested;
    const int depth = 100000;
    for (int i = 0; i < depth; ++i) nested += R"({"type":"Sequence",")" + list + R"(":[)";
    nested += "null";
    for (int i = 0; i < depth; ++i) nested += "]}";
    json t = base_tokenizer();
    t[section] = "NESTED";
    std::string text = t.dump();
    const std::string mark = "\"" + section + "\":\"NESTED\"";
    const size_t at = text.find(mark);
    ASSERT_NE(at, std::string::npos);
    text.replace(at, mark.size(), "\"" + section + "\":" + nested);
    const std::string err = tokenizer_error(text);
    EXPECT_EQ(err.rfind("tok.json", 0), 0u) << section << ": " << err.substr(0, 200);
    EXPECT_NE(err.find("nested deeper than"), std::string::npos)
        << section << ": " << err.substr(0, 200);
  }
}

// Item 5: ids that wrapped, were truncated, collided or allocated gigabytes.
TEST(HostileTokenizer, TokenIdsAreCheckedBeforeUse) {
  auto with_vocab_id = [](const json& id) {
    json t = base_tokenizer();
    t["model"]["vocab"]["hello"] = id;
    return t.dump();
  };
  EXPECT_NE(tokenizer_error(with_vocab_id(json(uint64_t(4294967301ull)))).find("4294967301"),
            std::string::npos);                                                   // 2^32 + 5
  EXPECT_NE(tokenizer_error(with_vocab_id(5.7)).find("5.7"), std::string::npos);  // not 5
  EXPECT_NE(tokenizer_error(with_vocab_id(json(500000000))).find("500000000"),
            std::string::npos);  // 5e8: refused before allocating
  EXPECT_NE(tokenizer_error(with_vocab_id(json(-3))).find("-3"), std::string::npos);
  EXPECT_NE(tokenizer_error(with_vocab_id(json(65))).find("ids must be unique"),
            std::string::npos);  // 65 is already a byte symbol's id
  json t = base_tokenizer();
  t["added_tokens"] = json::array({{{"id", 65}, {"content", "<|x|>"}, {"special", true}}});
  EXPECT_NE(tokenizer_error(t.dump()).find("has the id 65 of the vocab token"), std::string::npos);
  t["added_tokens"] = json::array({{{"id", 300}, {"content", "<|a|>"}, {"special", true}},
                                   {{"id", 300}, {"content", "<|b|>"}, {"special", true}}});
  EXPECT_NE(tokenizer_error(t.dump()).find("share the id 300"), std::string::npos);
  t["added_tokens"] = json::array({{{"id", 300}, {"content", "<|a|>"}, {"special", true}}});
  EXPECT_EQ(tokenizer_error(t.dump()), "(accepted)");
}

// Item 6: looser than safetensors' own rules.
std::string st_image(const std::string& header, const std::string& data) {
  std::string out;
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xFF));
  return out + header + data;
}
std::string st_error(const std::string& image) {
  try {
    parse_safetensors(reinterpret_cast<const uint8_t*>(image.data()), image.size(),
                      "w.safetensors");
  } catch (const SafetensorsError& e) {
    return e.what();
  }
  return "(accepted)";
}

TEST(HostileSafetensors, DuplicateKeysInsideAnEntryAreRefused) {
  const std::string ok = R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
  EXPECT_EQ(st_error(st_image(ok, "abcd")), "(accepted)");
  const std::string dup = R"({"a":{"dtype":"I8","dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
  EXPECT_NE(st_error(st_image(dup, "abcd")).find("\"dtype\" twice"), std::string::npos);
}

// Item 7: a shape of [2^62, 4, 0] gave a multi-line LibTorch trace downstream.
TEST(HostileSafetensors, HugeShapesAreRefused) {
  const std::string h =
      R"({"a":{"dtype":"F32","shape":[4611686018427387904,4,0],"data_offsets":[0,0]}})";
  const std::string err = st_error(st_image(h, ""));
  EXPECT_NE(err.find("w.safetensors: tensor \"a\" has a bad shape entry"), std::string::npos)
      << err;
  const std::string wide =
      R"({"a":{"dtype":"F32","shape":[1048576,1048576,1048576],"data_offsets":[0,0]}})";
  EXPECT_NE(st_error(st_image(wide, "")).find("more than 2^48"), std::string::npos);
}

TEST(HostileSafetensors, ShardNamesWithNulOrControlsAreRefused) {
  const fs::path d = scratch("nul");
  const std::string shard = R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
  write(d / "x.safetensors", st_image(shard, "abcd"));
  json index = {{"weight_map", {{"a", std::string("x.safetensors\0.x", 16)}}}};
  write(d / "model.safetensors.index.json", index.dump());
  try {
    Checkpoint ck((d / "model.safetensors.index.json").string());
    FAIL() << "accepted a shard name with an embedded NUL";
  } catch (const SafetensorsError& e) {
    EXPECT_NE(std::string(e.what()).find("names a bad shard"), std::string::npos) << e.what();
  }
  fs::remove_all(d);
}

// Item 3: a FIFO given as a checkpoint, config or tokenizer blocked forever in open().
TEST(HostileFiles, FifosAreRefusedNotOpened) {
  const fs::path d = scratch("fifo");
  ASSERT_EQ(::mkfifo((d / "model.safetensors").c_str(), 0600), 0);
  ASSERT_EQ(::mkfifo((d / "config.json").c_str(), 0600), 0);
  ASSERT_EQ(::mkfifo((d / "tokenizer.json").c_str(), 0600), 0);
  EXPECT_THROW(SafetensorsFile((d / "model.safetensors").string()), SafetensorsError);
  try {
    load_config(d.string());
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("not a regular file"), std::string::npos) << e.what();
  }
  EXPECT_THROW(Tokenizer::load(d.string()), TokenizerError);
  fs::remove_all(d);
}

// Item 7: a folder without config.json was reported as a missing tokenizer.json.
TEST(HostileFiles, MissingConfigIsNamed) {
  const fs::path d = scratch("noconfig");
  try {
    load_config(d.string());
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("has no config.json"), std::string::npos) << e.what();
  }
  try {
    Tokenizer::load(d.string());
    FAIL();
  } catch (const TokenizerError& e) {
    EXPECT_NE(std::string(e.what()).find("has no tokenizer.json"), std::string::npos) << e.what();
  }
  fs::remove_all(d);
}

// Items 3, 4, 7: sizes out of range, numbers out of double range, values of the wrong type.
std::string config_error(const std::string& text) {
  try {
    parse_config(text, "cfg.json");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "(accepted)";
}
std::string llama_with(const std::string& key, const std::string& value) {
  json j = {{"architectures", {"LlamaForCausalLM"}},
            {"model_type", "llama"},
            {"hidden_size", 64},
            {"intermediate_size", 128},
            {"num_hidden_layers", 2},
            {"num_attention_heads", 4},
            {"vocab_size", 100},
            {"rms_norm_eps", 1e-5},
            {"rope_theta", 10000.0}};
  std::string text = j.dump();
  if (!key.empty()) {
    const std::string k = "\"" + key + "\":";
    const size_t at = text.find(k);
    if (at == std::string::npos) {
      text.insert(1, k + value + ",");
    } else {
      const size_t end = text.find_first_of(",}", at + k.size());
      text = text.substr(0, at + k.size()) + value + text.substr(end);
    }
  }
  return text;
}

TEST(HostileConfig, OutOfRangeAndMistypedValuesGetOneLine) {
  EXPECT_EQ(config_error(llama_with("", "")), "(accepted)");
  for (auto [key, value, want] : std::vector<std::tuple<std::string, std::string, std::string>>{
           {"num_hidden_layers", "1e9", "\"num_hidden_layers\" must be an integer in [0, 4096]"},
           {"hidden_size", "1e30", "\"hidden_size\" must be an integer"},
           {"hidden_size", "1e400", "cfg.json: not valid JSON"},
           {"hidden_size", "18446744073709551615", "\"hidden_size\" must be an integer"},
           {"vocab_size", "-5", "\"vocab_size\" must be an integer"},
           {"model_type", "5", "cfg.json: unexpected structure"},
           {"num_local_experts", "8", "mixture-of-experts"}}) {
    const std::string err = config_error(llama_with(key, value));
    EXPECT_NE(err.find(want), std::string::npos) << key << "=" << value << ": " << err;
    EXPECT_EQ(err.find('\n'), std::string::npos) << err;
    EXPECT_EQ(err.rfind("cfg.json", 0), 0u) << err;
  }
}

TEST(HostileConfig, ParameterCountOfTheLargestAcceptedShapeFitsInt64) {
  ModelConfig c = parse_config(llama_with("", ""), "cfg.json");
  c.hidden_size = 1 << 17;
  c.intermediate_size = 1 << 20;
  c.num_hidden_layers = 4096;
  c.num_attention_heads = 4096;
  c.num_key_value_heads = 4096;
  c.head_dim = 4096;
  c.vocab_size = 1 << 23;
  const int64_t h = c.hidden_size, ff = c.intermediate_size, q = 4096LL * 4096;
  const int64_t per_layer = 2 * q * h + 2 * q * h + 3 * ff * h + 2 * h;
  EXPECT_EQ(parameter_count(c), 4096 * per_layer + 2 * c.vocab_size * h + h);
}

}  // namespace

namespace {
// dmx-search's checkpoint.json: other searches, steps out of range, wrong counts, non-finite or
// out-of-range bit patterns are refused with one line.
TEST(HostileSearchCheckpoint, OnlyAValidCheckpointOfThisSearchResumes) {
  SearchCheckpoint ck;
  ck.fingerprint = "fp";
  ck.step = 4;
  ck.theta = {0x3f800000u, 0};
  ck.momentum = {0, 0x3f800000u};
  const std::string good = search_checkpoint_json(ck);
  const SearchCheckpoint back = parse_search_checkpoint(good, "ck.json", "fp", 2, 10);
  EXPECT_EQ(back.step, 4);
  EXPECT_EQ(back.theta, ck.theta);
  EXPECT_EQ(back.momentum, ck.momentum);
  auto err = [](const std::string& text, const std::string& fp, size_t params, int steps) {
    try {
      parse_search_checkpoint(text, "ck.json", fp, params, steps);
    } catch (const CheckpointError& e) {
      return std::string(e.what());
    }
    return std::string("(accepted)");
  };
  EXPECT_NE(err(good, "other", 2, 10).find("ck.json: checkpoint of a different search"),
            std::string::npos);
  EXPECT_NE(err(good, "fp", 3, 10).find("wrong number of offsets"), std::string::npos);
  EXPECT_NE(err(good, "fp", 2, 3).find("step must be an integer in [0, 3]"), std::string::npos);
  json j = json::parse(good);
  j["theta"][0] = 0x7fc00000u;  // NaN
  EXPECT_NE(err(j.dump(), "fp", 2, 10).find("non-finite"), std::string::npos);
  j["theta"][0] = 4294967301ull;  // 2^32 + 5 would wrap to 5
  EXPECT_NE(err(j.dump(), "fp", 2, 10).find("not FP32 bits"), std::string::npos);
  j["theta"][0] = -1;
  EXPECT_NE(err(j.dump(), "fp", 2, 10).find("not FP32 bits"), std::string::npos);
  EXPECT_NE(err("{\"step\":", "fp", 2, 10).find("ck.json: not a checkpoint"), std::string::npos);
  EXPECT_NE(err("[1]", "fp", 2, 10).find("not a JSON object"), std::string::npos);
}
}  // namespace

namespace {
// Items 7: `dmx-eval --seqlen 100000` tried to allocate 160 GB, `dmx-train` with hidden_size 1e6
// printed an allocation trace: the pass is estimated first and refused with the estimate.
TEST(HostileMemory, ImpossiblePassesAreRefusedWithTheEstimate) {
  const ModelConfig c = parse_config(llama_with("", ""), "cfg.json");
  // Hand count for a tiny pass: B = 1, T = 4, H = 4 heads, vocab 100, hidden 64, ff 128.
  const double scores = 1.0 * 4 * 4 * 4 * 4, logits = 1.0 * 4 * 100 * 4;
  const double hidden = 1.0 * 4 * (64 + 64 + 2 * 64 + 3 * 128) * 4;
  EXPECT_EQ(estimate_pass_bytes(c, 1, 4, Pass::Forward),
            int64_t(double(parameter_count(c)) * 4 + 3 * scores + 3 * logits + 2 * hidden));
  // Attention in query blocks: a forward holds one block's [rows, T] scores per head, never [T, T];
  // autograd keeps the causal half of every layer's [T, T].
  EXPECT_GT(estimate_pass_bytes(c, 1, 100000, Pass::Forward),
            3 * kAttentionBlockRows * int64_t(100000) * 4 * 4);
  EXPECT_LT(estimate_pass_bytes(c, 1, 100000, Pass::Forward), int64_t(100000) * 100000 * 4 * 4);
  EXPECT_GT(estimate_pass_bytes(c, 1, 100000, Pass::Backward),
            c.num_hidden_layers * 2 * (int64_t(100000) * 100000 / 2) * 4 * 4);
  // Autograd keeps every layer's activations and scores (2 layers); training adds 3 x the weights.
  const double kept = 2 * (hidden + 2 * scores);
  EXPECT_EQ(
      estimate_pass_bytes(c, 1, 4, Pass::Train) - estimate_pass_bytes(c, 1, 4, Pass::Forward),
      int64_t(kept) + 3 * 4 * parameter_count(c));
  // dmx-search's Backward also keeps 6.5 floats per fake-quantized element: per layer the decoder
  // weights (64 x 192 q/k/v + 64 x 64 o + 3 x 64 x 128 MLP = 40,960) once, and per token the
  // Linear inputs (3 x 64 + 64 + 2 x 64 + 128 = 512) at 6.5 + 1 (the product keeps the quantized
  // input) plus the 4 distinct inputs (64 + 64 + 64 + 128 = 320) kept alive.
  const double fake_quant = 2 * (6.5 * 40960 + 4 * (7.5 * 512 + 320)) * 4;
  EXPECT_EQ(
      estimate_pass_bytes(c, 1, 4, Pass::Backward) - estimate_pass_bytes(c, 1, 4, Pass::Forward),
      int64_t(kept + fake_quant));
  ::setenv("DMX_MEMORY_LIMIT_MB", "1024", 1);
  EXPECT_EQ(machine_memory_bytes(), int64_t(1024) << 20);
  EXPECT_NO_THROW(check_pass_fits(c, 8, 128, Pass::Train, "eval"));
  try {
    check_pass_fits(c, 1, 100000, Pass::Forward, "perplexity of m");
    FAIL() << "a 100,000-token window was accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("perplexity of m needs about"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("more than this machine's 1024 MiB"), std::string::npos);
  }
  ::unsetenv("DMX_MEMORY_LIMIT_MB");
}
}  // namespace
