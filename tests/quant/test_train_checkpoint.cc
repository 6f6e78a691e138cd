// dmx-train's checkpoint.safetensors: a written checkpoint reads back bit for bit, and every
// malformed one is refused with one line naming the file and the problem.
#include <dmx/quant/safetensors.h>
#include <dmx/quant/train_checkpoint.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>

using namespace dmx::quant;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

struct Scratch {
  fs::path dir = fs::temp_directory_path() / ("dmx_train_ckpt_" + std::to_string(::getpid()));
  Scratch() {
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  ~Scratch() { fs::remove_all(dir); }
};

TrainCheckpoint read_back(const fs::path& p, SafetensorsFile& file) {
  SafetensorsHeader h;
  h.metadata = file.metadata();
  h.tensors = file.tensors();
  return parse_train_checkpoint(h, p.string());
}

std::vector<float> floats(const TensorView& v) {
  std::vector<float> out(v.nbytes / 4);
  std::memcpy(out.data(), v.data, v.nbytes);
  return out;
}

TEST(TrainCheckpoint, RoundTripsBitForBit) {
  const uint32_t seed = 20261205;
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  Scratch s;
  std::vector<float> w(6 * 4), m(6 * 4), v(6 * 4), norm(4);
  for (auto* vec : {&w, &m, &v, &norm})
    for (float& x : *vec) x = normal(rng);
  for (float& x : v) x = x * x;
  w[3] = -0.0f;  // a sign-only bit pattern survives too
  const std::vector<TrainLogRow> log = {{1, 1e-4, 5.5, 0.75, std::nan("")},
                                        {2, 2e-4, 5.25, 0.5, 5.3125}};
  const std::vector<TrainTensor> tensors = {
      {"model.layers.0.w", {6, 4}, w.data(), m.data(), v.data(), 7},
      {"model.norm.weight", {4}, norm.data(), nullptr, nullptr, 0}};
  const fs::path p = s.dir / "checkpoint.safetensors";
  write_train_checkpoint(p.string(), "fp{\"x\":1}", 7, 12.5, log, tensors);
  SafetensorsFile file(p.string());
  const TrainCheckpoint ck = read_back(p, file);
  EXPECT_EQ(ck.fingerprint, "fp{\"x\":1}");
  EXPECT_EQ(ck.step, 7);
  EXPECT_EQ(ck.seconds, 12.5);
  ASSERT_EQ(ck.log.size(), 2u);
  EXPECT_EQ(ck.log[1].step, 2);
  EXPECT_EQ(ck.log[1].val_loss, 5.3125);
  EXPECT_TRUE(std::isnan(ck.log[0].val_loss));
  EXPECT_EQ(ck.log[0].lr, 1e-4);
  ASSERT_EQ(ck.params.size(), 2u);
  const TrainParamState& p0 = ck.params.at("model.layers.0.w");
  EXPECT_EQ(p0.param.shape, (std::vector<int64_t>{6, 4}));
  EXPECT_EQ(p0.adam_step, 7);
  const auto w2 = floats(p0.param), m2 = floats(p0.exp_avg), v2 = floats(p0.exp_avg_sq);
  EXPECT_EQ(std::memcmp(w2.data(), w.data(), w.size() * 4), 0) << "seed " << seed;
  EXPECT_EQ(std::memcmp(m2.data(), m.data(), m.size() * 4), 0) << "seed " << seed;
  EXPECT_EQ(std::memcmp(v2.data(), v.data(), v.size() * 4), 0) << "seed " << seed;
  const TrainParamState& p1 = ck.params.at("model.norm.weight");
  EXPECT_FALSE(p1.has_adam_state);
  EXPECT_TRUE(p0.has_adam_state);
  EXPECT_EQ(floats(p1.param), norm);
}

// A checkpoint assembled tensor by tensor, then broken in one way per case.
struct Parts {
  std::vector<float> w = std::vector<float>(8, 0.5f);
  std::vector<double> log = {1, 1e-3, 4.0, 1.0, NAN};
  std::vector<int64_t> log_shape = {1, 5};
  json state = {{"fingerprint", "fp"}, {"step", 3}, {"seconds", 1.5}, {"adam_step", {{"w", 3}}}};
  std::map<std::string, std::string> meta = {{"format", "dmx-train-checkpoint"}, {"version", "1"}};
  std::vector<TensorToWrite> tensors() {
    return {{"train/log", DType::F64, log_shape, log.data(), log.size() * 8},
            {"param/w", DType::F32, {2, 4}, w.data(), 32},
            {"adam/exp_avg/w", DType::F32, {2, 4}, w.data(), 32},
            {"adam/exp_avg_sq/w", DType::F32, {2, 4}, w.data(), 32}};
  }
};

std::string error_of(Parts parts, std::vector<TensorToWrite> tensors, bool raw_state = false,
                     const std::string& state_text = "") {
  Scratch s;
  const fs::path p = s.dir / "c.safetensors";
  auto meta = parts.meta;
  if (meta.count("state") == 0) meta["state"] = raw_state ? state_text : parts.state.dump();
  write_safetensors(p.string(), tensors, meta);
  try {
    SafetensorsFile file(p.string());
    read_back(p, file);
  } catch (const CheckpointError& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    EXPECT_EQ(msg.rfind(p.string() + ": ", 0), 0u) << msg;
    return msg;
  }
  return "(accepted)";
}

std::string error_of(Parts parts) {
  auto t = parts.tensors();
  return error_of(parts, t);
}

TEST(TrainCheckpoint, TheBaseCaseIsAccepted) { EXPECT_EQ(error_of(Parts{}), "(accepted)"); }

TEST(TrainCheckpoint, RefusesMetadataProblems) {
  Parts p;
  p.meta.erase("format");
  EXPECT_NE(error_of(p).find("no metadata \"format\""), std::string::npos);
  p = Parts{};
  p.meta["format"] = "pytorch";
  EXPECT_NE(error_of(p).find("metadata format is not dmx-train-checkpoint"), std::string::npos);
  p = Parts{};
  p.meta["version"] = "2";
  EXPECT_NE(error_of(p).find("version 2, this reader knows 1"), std::string::npos);
  p = Parts{};
  EXPECT_NE(error_of(p, p.tensors(), true, "{\"step\": ").find("state is not JSON"),
            std::string::npos);
  EXPECT_NE(error_of(p, p.tensors(), true, "[1,2]").find("state is not a JSON object"),
            std::string::npos);
}

TEST(TrainCheckpoint, RefusesStateOutOfRange) {
  const std::vector<std::pair<json, std::string>> cases = {
      {{{"fingerprint", 5}}, "no fingerprint"},
      {{{"step", -1}}, "step is not an integer in [0, 1099511627776]"},
      {{{"step", 1.5}}, "step is not an integer"},
      {{{"step", 1e300}}, "step is not an integer"},
      {{{"step", int64_t(1) << 41}}, "step is not an integer"},
      {{{"seconds", -2}}, "seconds is not a finite time >= 0"},
      {{{"seconds", "1"}}, "seconds is not a finite time >= 0"},
      {{{"adam_step", 3}}, "no adam_step object"},
      {{{"adam_step", {{"w", 4}}}}, "adam_step of \"w\" is not an integer in [0, 3]"},
      {{{"adam_step", {{"w", 3}, {"v", 1}}}}, "adam_step of \"v\" but no param"},
      {{{"adam_step", json::object()}}, "parameter \"w\" has part of its AdamW state"},
  };
  for (const auto& [patch, expect] : cases) {
    Parts p;
    p.state.update(patch);
    EXPECT_NE(error_of(p).find(expect), std::string::npos) << patch.dump() << ": " << error_of(p);
  }
}

TEST(TrainCheckpoint, RefusesLogProblems) {
  Parts p;
  p.log = {1, 0, 0, 0, 0, 2, 0, 0, 0, 0, 3, 0, 0, 0, 0, 3, 0, 0, 0, 0};
  p.log_shape = {4, 5};
  EXPECT_NE(error_of(p).find("train/log has more rows than steps"), std::string::npos);
  p = Parts{};
  p.log[0] = 4;
  EXPECT_NE(error_of(p).find("train/log row 0 has a step outside [1, step]"), std::string::npos);
  p.log[0] = 1.5;
  EXPECT_NE(error_of(p).find("train/log row 0 has a step outside"), std::string::npos);
  p.log[0] = NAN;
  EXPECT_NE(error_of(p).find("train/log row 0 has a step outside"), std::string::npos);
  p = Parts{};
  p.log = {1, 0, 0, 0};
  p.log_shape = {1, 4};
  EXPECT_NE(error_of(p).find("train/log is not F64 [rows, 5]"), std::string::npos);
  p = Parts{};
  auto t = p.tensors();
  t.erase(t.begin());
  EXPECT_NE(error_of(p, t).find("no tensor train/log"), std::string::npos);
}

TEST(TrainCheckpoint, RefusesTensorProblems) {
  Parts p;
  auto t = p.tensors();
  t.push_back({"optimizer/w", DType::F32, {2, 4}, p.w.data(), 32});
  EXPECT_NE(error_of(p, t).find("unknown tensor \"optimizer/w\""), std::string::npos);
  t = p.tensors();
  t[1].dtype = DType::I32;
  EXPECT_NE(error_of(p, t).find("tensor \"param/w\" is not F32"), std::string::npos);
  t = p.tensors();
  t[2].shape = {4, 2};
  EXPECT_NE(error_of(p, t).find("AdamW state of \"w\" has another shape"), std::string::npos);
  t = p.tensors();
  t[1].name = "param/";
  EXPECT_NE(error_of(p, t).find("names no parameter"), std::string::npos);
  t = p.tensors();
  t.erase(t.begin() + 1);
  EXPECT_NE(error_of(p, t).find("AdamW state of \"w\" but no param"), std::string::npos);
  t = p.tensors();
  t.pop_back();
  EXPECT_NE(error_of(p, t).find("parameter \"w\" has part of its AdamW state"), std::string::npos);
}

}  // namespace
