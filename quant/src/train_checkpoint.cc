// dmx-train's checkpoint.safetensors: writer and strict reader (layout in train_checkpoint.h).
#include "dmx/quant/train_checkpoint.h"

#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>

namespace dmx::quant {

namespace {

using json = nlohmann::json;

constexpr const char* kFormat = "dmx-train-checkpoint";
constexpr const char* kVersion = "1";
constexpr const char* kParam = "param/";
constexpr const char* kExpAvg = "adam/exp_avg/";
constexpr const char* kExpAvgSq = "adam/exp_avg_sq/";
constexpr const char* kLog = "train/log";

bool starts_with(const std::string& s, const char* prefix) {
  return s.compare(0, std::strlen(prefix), prefix) == 0;
}

int64_t numel_of(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

}  // namespace

void write_train_checkpoint(const std::string& path, const std::string& fingerprint, int64_t step,
                            double seconds, const std::vector<TrainLogRow>& log,
                            const std::vector<TrainTensor>& tensors) {
  std::vector<double> log_values;
  log_values.reserve(log.size() * 5);
  for (const TrainLogRow& r : log)
    for (double v : {static_cast<double>(r.step), r.lr, r.loss, r.grad_norm, r.val_loss})
      log_values.push_back(v);
  std::vector<TensorToWrite> out;
  out.push_back({kLog,
                 DType::F64,
                 {static_cast<int64_t>(log.size()), 5},
                 log_values.data(),
                 log_values.size() * sizeof(double)});
  json adam_step = json::object();
  for (const TrainTensor& t : tensors) {
    const size_t nbytes = static_cast<size_t>(numel_of(t.shape)) * sizeof(float);
    out.push_back({kParam + t.name, DType::F32, t.shape, t.param, nbytes});
    if (t.exp_avg == nullptr) continue;
    out.push_back({kExpAvg + t.name, DType::F32, t.shape, t.exp_avg, nbytes});
    out.push_back({kExpAvgSq + t.name, DType::F32, t.shape, t.exp_avg_sq, nbytes});
    adam_step[t.name] = t.adam_step;
  }
  const json state = {
      {"fingerprint", fingerprint}, {"step", step}, {"seconds", seconds}, {"adam_step", adam_step}};
  write_safetensors(path, out,
                    {{"format", kFormat}, {"version", kVersion}, {"state", state.dump()}});
}

TrainCheckpoint parse_train_checkpoint(const SafetensorsHeader& header, const std::string& origin) {
  auto fail = [&](const std::string& what) -> void {
    throw CheckpointError(origin + ": not a dmx-train checkpoint (" + what + ")");
  };
  auto meta = [&](const char* key) -> const std::string& {
    const auto it = header.metadata.find(key);
    if (it == header.metadata.end()) fail(std::string("no metadata \"") + key + "\"");
    return it->second;
  };
  if (meta("format") != kFormat) fail("metadata format is not " + std::string(kFormat));
  if (meta("version") != kVersion)
    fail("version " + meta("version").substr(0, 16) + ", this reader knows " + kVersion);
  json state;
  try {
    state = json::parse(meta("state"));
  } catch (const json::exception& e) {
    const std::string msg = e.what();
    fail("state is not JSON: " + msg.substr(msg.find(']') + 2));
  }
  if (!state.is_object()) fail("state is not a JSON object");
  TrainCheckpoint ck;
  if (!state.contains("fingerprint") || !state["fingerprint"].is_string()) fail("no fingerprint");
  ck.fingerprint = state["fingerprint"].get<std::string>();
  auto count = [&](const json& v, int64_t max, const std::string& what) {
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > max)
      fail(what + " is not an integer in [0, " + std::to_string(max) + "]");
    return v.get<int64_t>();
  };
  if (!state.contains("step")) fail("no step");
  ck.step = count(state["step"], kMaxTrainSteps, "step");
  if (!state.contains("seconds") || !state["seconds"].is_number() ||
      !(state["seconds"].get<double>() >= 0) || !std::isfinite(state["seconds"].get<double>()))
    fail("seconds is not a finite time >= 0");
  ck.seconds = state["seconds"].get<double>();
  if (!state.contains("adam_step") || !state["adam_step"].is_object()) fail("no adam_step object");
  const json& adam_step = state["adam_step"];

  std::map<std::string, const TensorView*> exp_avg, exp_avg_sq;
  const TensorView* log = nullptr;
  for (const TensorView& t : header.tensors) {
    if (t.name == kLog) {
      log = &t;
      continue;
    }
    std::map<std::string, const TensorView*>* moments = nullptr;
    std::string name;
    if (starts_with(t.name, kParam)) {
      name = t.name.substr(std::strlen(kParam));
    } else if (starts_with(t.name, kExpAvg)) {
      name = t.name.substr(std::strlen(kExpAvg));
      moments = &exp_avg;
    } else if (starts_with(t.name, kExpAvgSq)) {
      name = t.name.substr(std::strlen(kExpAvgSq));
      moments = &exp_avg_sq;
    } else {
      fail("unknown tensor " + json(t.name).dump());
    }
    if (name.empty()) fail("tensor " + json(t.name).dump() + " names no parameter");
    if (t.dtype != DType::F32) fail("tensor " + json(t.name).dump() + " is not F32");
    if (moments != nullptr)
      (*moments)[name] = &t;
    else
      ck.params[name].param = t;
  }
  if (log == nullptr) fail("no tensor train/log");
  if (log->dtype != DType::F64 || log->shape.size() != 2 || log->shape[1] != 5)
    fail("train/log is not F64 [rows, 5]");
  if (log->shape[0] > ck.step) fail("train/log has more rows than steps");
  for (int64_t i = 0; i < log->shape[0]; ++i) {
    double row[5];
    std::memcpy(row, log->data + i * sizeof row, sizeof row);  // safetensors data is unaligned
    if (!(row[0] >= 1 && row[0] <= static_cast<double>(ck.step)) || row[0] != std::floor(row[0]))
      fail("train/log row " + std::to_string(i) + " has a step outside [1, step]");
    ck.log.push_back({static_cast<int64_t>(row[0]), row[1], row[2], row[3], row[4]});
  }
  for (const auto* moments : {&exp_avg, &exp_avg_sq})
    for (const auto& [name, t] : *moments)
      if (ck.params.count(name) == 0) fail("AdamW state of " + json(name).dump() + " but no param");
  for (auto it = adam_step.begin(); it != adam_step.end(); ++it)
    if (ck.params.count(it.key()) == 0)
      fail("adam_step of " + json(it.key()).dump() + " but no param");
  for (auto& [name, p] : ck.params) {
    const auto a = exp_avg.find(name), s = exp_avg_sq.find(name);
    const bool has_step = adam_step.contains(name);
    if ((a != exp_avg.end()) != has_step || (s != exp_avg_sq.end()) != has_step)
      fail("parameter " + json(name).dump() + " has part of its AdamW state");
    if (!has_step) continue;
    p.has_adam_state = true;
    p.exp_avg = *a->second;
    p.exp_avg_sq = *s->second;
    if (p.exp_avg.shape != p.param.shape || p.exp_avg_sq.shape != p.param.shape)
      fail("AdamW state of " + json(name).dump() + " has another shape than the parameter");
    p.adam_step = count(adam_step[name], ck.step, "adam_step of " + json(name).dump());
  }
  return ck;
}

}  // namespace dmx::quant
