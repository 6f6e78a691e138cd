// safetensors reader/writer: round trips, every validation rule, sharded checkpoints, and random
// corruptions (the parser must reject with SafetensorsError, never crash or read out of bounds).
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "dmx/quant/safetensors.h"

namespace fs = std::filesystem;
using dmx::quant::Checkpoint;
using dmx::quant::DType;
using dmx::quant::parse_safetensors;
using dmx::quant::SafetensorsError;
using dmx::quant::SafetensorsFile;
using dmx::quant::TensorToWrite;

namespace {

fs::path temp_dir(const std::string& name) {
  fs::path d =
      fs::temp_directory_path() / ("dmx_quant_st_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// An independent encoder: 8-byte little-endian length, then the header text, then the data.
std::string file_image(const std::string& header, const std::string& data) {
  std::string out;
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xFF));
  return out + header + data;
}

std::string parse_error(const std::string& image) {
  try {
    parse_safetensors(reinterpret_cast<const uint8_t*>(image.data()), image.size(),
                      "bad.safetensors");
  } catch (const SafetensorsError& e) {
    return e.what();
  }
  return "(accepted)";
}

}  // namespace

TEST(Safetensors, ParsesHandWrittenFile) {
  float f[3] = {1.5f, -2.0f, 3.25f};
  std::string data(reinterpret_cast<const char*>(f), sizeof f);
  data += std::string("\x80\x3f\x00\x40", 4);  // BF16 1.0, 2.0
  std::string header =
      R"({"__metadata__":{"format":"pt"},"b":{"dtype":"BF16","shape":[2],"data_offsets":[12,16]},)"
      R"("a":{"dtype":"F32","shape":[3,1],"data_offsets":[0,12]}})";
  std::string img = file_image(header, data);
  auto h = parse_safetensors(reinterpret_cast<const uint8_t*>(img.data()), img.size(), "x");
  ASSERT_EQ(h.tensors.size(), 2u);
  EXPECT_EQ(h.tensors[0].name, "a");  // sorted by offset
  EXPECT_EQ(h.tensors[0].dtype, DType::F32);
  EXPECT_EQ(h.tensors[0].shape, (std::vector<int64_t>{3, 1}));
  float back[3];
  std::memcpy(back, h.tensors[0].data, 12);
  EXPECT_EQ(back[2], 3.25f);
  EXPECT_EQ(h.tensors[1].nbytes, 4u);
  EXPECT_EQ(h.tensors[1].data[1], 0x3f);
  EXPECT_EQ(h.metadata.at("format"), "pt");
  EXPECT_EQ(h.data_offset, 8 + header.size());
}

TEST(Safetensors, WriterRoundTripAllDtypes) {
  fs::path d = temp_dir("rt");
  std::vector<float> f32 = {0.f, -1.f, 3.5f, 1e-30f, 7.f, 8.f};
  std::vector<uint16_t> bf16 = {0x3f80, 0xc000, 0x7f80, 0x0001};
  std::vector<uint8_t> fp8 = {0x00, 0x7e, 0xfe, 0x01, 0x38, 0x40};
  std::vector<uint8_t> fp4 = {0x21, 0x43, 0x65, 0x87};  // 8 elements, two per byte
  std::vector<int64_t> i64 = {-5, 1ll << 40};
  std::vector<TensorToWrite> ts = {
      {"z.f32", DType::F32, {2, 3}, f32.data(), f32.size() * 4},
      {"a.bf16", DType::BF16, {4}, bf16.data(), bf16.size() * 2},
      {"m.fp8", DType::F8_E4M3, {2, 3}, fp8.data(), fp8.size()},
      {"m.fp4", DType::F4, {2, 4}, fp4.data(), fp4.size()},
      {"i", DType::I64, {2}, i64.data(), 16},
      {"empty", DType::F16, {0, 4}, nullptr, 0},
  };
  const std::string path = (d / "t.safetensors").string();
  dmx::quant::write_safetensors(path, ts, {{"format", "pt"}, {"note", "x"}});
  SafetensorsFile f(path);
  EXPECT_EQ(f.tensors().size(), ts.size());
  for (const auto& t : ts) {
    const auto* v = f.find(t.name);
    ASSERT_NE(v, nullptr) << t.name;
    EXPECT_EQ(v->dtype, t.dtype) << t.name;
    EXPECT_EQ(v->shape, t.shape) << t.name;
    ASSERT_EQ(v->nbytes, t.nbytes) << t.name;
    if (t.nbytes) {
      EXPECT_EQ(std::memcmp(v->data, t.data, t.nbytes), 0) << t.name;
    }
  }
  EXPECT_EQ(f.metadata().at("note"), "x");
  // The header is padded to 8 bytes, so every tensor starts 8-aligned relative to the data.
  std::ifstream in(path, std::ios::binary);
  uint64_t n = 0;
  in.read(reinterpret_cast<char*>(&n), 8);
  EXPECT_EQ(n % 8, 0u);
  for (const auto& e : fs::directory_iterator(d))  // no temporary left behind
    EXPECT_EQ(e.path().filename(), "t.safetensors");
  // Writer refuses a byte count that disagrees with dtype x shape.
  std::vector<TensorToWrite> bad = {{"x", DType::F32, {3}, f32.data(), 8}};
  EXPECT_THROW(dmx::quant::write_safetensors((d / "bad.safetensors").string(), bad),
               SafetensorsError);
  EXPECT_FALSE(fs::exists(d / "bad.safetensors"));
  fs::remove_all(d);
}

TEST(Safetensors, DtypeTable) {
  EXPECT_EQ(dmx::quant::dtype_bits(DType::F4), 4);
  EXPECT_EQ(dmx::quant::dtype_bits(DType::F6_E2M3), 6);
  EXPECT_EQ(dmx::quant::dtype_bits(DType::BF16), 16);
  EXPECT_EQ(*dmx::quant::parse_dtype("F8_E5M2"), DType::F8_E5M2);
  EXPECT_FALSE(dmx::quant::parse_dtype("F12").has_value());
}

TEST(Safetensors, RejectsMalformedFilesWithOneLineNamedErrors) {
  const std::string d4(4, '\0');
  struct Case {
    std::string image, expect;
  };
  auto h = [&](const std::string& header, const std::string& data = std::string(4, '\0')) {
    return file_image(header, data);
  };
  std::string too_long = file_image("{}", "");
  too_long[0] = 100;  // claims a 100-byte header in a 10-byte file
  std::vector<Case> cases = {
      {"abc", "too short"},
      {too_long, "exceeds the file size"},
      {h("[1,2]"), "does not start with a JSON object"},
      {h("{\"a\":"), "not valid JSON"},
      {h(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})"),
       "twice"},
      {h(R"({"a":{"dtype":"Q8","shape":[1],"data_offsets":[0,4]}})"), "unknown dtype"},
      {h(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})"), "needs 8"},
      {h(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,8]}})", std::string(4, '\0')),
       "past the data section"},
      {h(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}})"), "begin after end"},
      {h(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})"), "bad shape entry"},
      {h(R"({"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})"), "bad shape entry"},
      {h(R"({"a":{"dtype":"F32","shape":[1]}})"), "data_offsets"},
      {h(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}})"), "unknown field"},
      {h(R"({"a":{"dtype":"F4","shape":[3],"data_offsets":[0,4]}})"),
       "not a whole number of bytes"},
      {h(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[3],"data_offsets":[1,4]}})"),
       "overlaps"},
      {h(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"b":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}})"),
       "gap of 1 bytes"},
      {h(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})"), "2 trailing bytes"},
      {h(R"({"__metadata__":{"k":1},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})"),
       "is not a string"},
      {h(R"({"a":[1]})"), "is not an object"},
  };
  for (const auto& c : cases) {
    const std::string msg = parse_error(c.image);
    EXPECT_NE(msg.find("bad.safetensors: "), std::string::npos) << msg;
    EXPECT_NE(msg.find(c.expect), std::string::npos) << "expected '" << c.expect << "' in: " << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

TEST(Safetensors, FileErrorsNameThePath) {
  fs::path d = temp_dir("ferr");
  try {
    SafetensorsFile f((d / "missing.safetensors").string());
    FAIL() << "opened a missing file";
  } catch (const SafetensorsError& e) {
    EXPECT_NE(std::string(e.what()).find("missing.safetensors: cannot open"), std::string::npos)
        << e.what();
  }
  {
    std::ofstream o(d / "trunc.safetensors", std::ios::binary);
    o.write("\x10\x00", 2);
  }
  try {
    SafetensorsFile f((d / "trunc.safetensors").string());
    FAIL();
  } catch (const SafetensorsError& e) {
    EXPECT_NE(std::string(e.what()).find("trunc.safetensors: file is 2 bytes"), std::string::npos)
        << e.what();
  }
  fs::remove_all(d);
}

TEST(Safetensors, ShardedCheckpointThroughIndex) {
  fs::path d = temp_dir("shard");
  std::vector<float> a = {1, 2, 3}, b = {4, 5}, c = {6};
  dmx::quant::write_safetensors(
      (d / "model-00001-of-00002.safetensors").string(),
      {{"w.a", DType::F32, {3}, a.data(), 12}, {"w.b", DType::F32, {2}, b.data(), 8}});
  dmx::quant::write_safetensors((d / "model-00002-of-00002.safetensors").string(),
                                {{"w.c", DType::F32, {1}, c.data(), 4}});
  nlohmann::json index = {{"metadata", {{"total_size", 24}}},
                          {"weight_map",
                           {{"w.a", "model-00001-of-00002.safetensors"},
                            {"w.b", "model-00001-of-00002.safetensors"},
                            {"w.c", "model-00002-of-00002.safetensors"}}}};
  dmx::quant::write_file_atomic((d / "model.safetensors.index.json").string(), index.dump());
  Checkpoint ck(d.string());
  EXPECT_EQ(ck.names(), (std::vector<std::string>{"w.a", "w.b", "w.c"}));
  EXPECT_EQ(ck.files().size(), 2u);
  float v;
  std::memcpy(&v, ck.at("w.c").data, 4);
  EXPECT_EQ(v, 6.0f);
  std::memcpy(&v, ck.at("w.b").data + 4, 4);
  EXPECT_EQ(v, 5.0f);
  EXPECT_THROW(ck.at("w.d"), SafetensorsError);

  // A map entry pointing at a shard that lacks the tensor.
  index["weight_map"]["w.c"] = "model-00001-of-00002.safetensors";
  dmx::quant::write_file_atomic((d / "model.safetensors.index.json").string(), index.dump());
  try {
    Checkpoint bad(d.string());
    FAIL();
  } catch (const SafetensorsError& e) {
    EXPECT_NE(std::string(e.what()).find("which lacks it"), std::string::npos) << e.what();
  }
  // A missing shard file.
  index["weight_map"]["w.c"] = "model-00003-of-00002.safetensors";
  dmx::quant::write_file_atomic((d / "model.safetensors.index.json").string(), index.dump());
  EXPECT_THROW(Checkpoint bad(d.string()), SafetensorsError);
  // Malformed index JSON.
  dmx::quant::write_file_atomic((d / "model.safetensors.index.json").string(),
                                "{\"weight_map\": [");
  try {
    Checkpoint bad(d.string());
    FAIL();
  } catch (const SafetensorsError& e) {
    EXPECT_NE(std::string(e.what()).find("model.safetensors.index.json: not valid JSON"),
              std::string::npos)
        << e.what();
  }
  fs::remove_all(d);
}

// Random corruptions of a valid file: every result is either a clean parse with views inside the
// buffer, or a SafetensorsError (any other exception type fails the test).
TEST(Safetensors, RandomCorruptionsAreRejectedCleanly) {
  const uint32_t seed = 20261128;
  std::mt19937 rng(seed);
  std::vector<float> a = {1, 2, 3, 4};
  std::vector<uint16_t> b = {1, 2, 3};
  fs::path d = temp_dir("fuzz");
  dmx::quant::write_safetensors(
      (d / "v.safetensors").string(),
      {{"alpha", DType::F32, {2, 2}, a.data(), 16}, {"beta", DType::BF16, {3}, b.data(), 6}},
      {{"format", "pt"}});
  std::ifstream in(d / "v.safetensors", std::ios::binary);
  const std::string valid((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  fs::remove_all(d);
  int accepted = 0, rejected = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    std::string img = valid;
    const int kind = iter % 4;
    if (kind == 0) {
      img.resize(rng() % (img.size() + 1));
    } else {
      const int flips = 1 + rng() % 4;
      for (int k = 0; k < flips; ++k) {
        size_t pos = rng() % img.size();
        if (kind == 1)
          img[pos] = static_cast<char>(rng() & 0xFF);
        else if (kind == 2)
          img[pos] = "0123456789,:{}[]\" "[rng() % 18];
        else
          img.insert(pos, 1, static_cast<char>(rng() & 0xFF));
      }
    }
    const auto* p = reinterpret_cast<const uint8_t*>(img.data());
    try {
      auto h = parse_safetensors(p, img.size(), "c");
      for (const auto& t : h.tensors)
        ASSERT_TRUE(t.data >= p && t.data + t.nbytes <= p + img.size())
            << "seed " << seed << " iter " << iter;
      ++accepted;
    } catch (const SafetensorsError&) {
      ++rejected;
    }
  }
  EXPECT_GT(rejected, 2000) << "seed " << seed;
  EXPECT_GT(accepted, 0) << "seed " << seed;  // some mutations (e.g. in tensor bytes) stay valid
}
