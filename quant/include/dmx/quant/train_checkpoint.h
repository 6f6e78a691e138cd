// The resumable state of dmx-train (checkpoint.safetensors): parameters, AdamW moments and the
// run's progress in one safetensors file, read and validated without LibTorch so that the reader is
// tested and fuzzed on its own (its container parser is the one every model load uses).
//
// Layout: tensors "param/<name>", "adam/exp_avg/<name>", "adam/exp_avg_sq/<name>" (F32, one
// shape per name) and "train/log" (F64 [rows, 5]: step, lr, train loss, grad norm, val loss or
// NaN); metadata "format" = "dmx-train-checkpoint", "version" = "1" and "state", a JSON object
// {"fingerprint": str, "step": n, "seconds": x, "adam_step": {name: n}}. A parameter has AdamW
// moments exactly when it has an "adam_step" entry.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "dmx/quant/safetensors.h"
#include "dmx/quant/search_checkpoint.h"  // CheckpointError

namespace dmx::quant {

struct TrainLogRow {
  int64_t step = 0;
  double lr = 0, loss = 0, grad_norm = 0, val_loss = 0;  // val_loss NaN when not evaluated
};

// One parameter's saved state: views whose data points into the file's bytes (valid while the
// file is open).
struct TrainParamState {
  TensorView param;
  bool has_adam_state = false;  // false when the optimizer has not stepped this parameter
  TensorView exp_avg, exp_avg_sq;
  int64_t adam_step = 0;
};

struct TrainCheckpoint {
  std::string fingerprint;  // every setting that shapes the trajectory (dmx-train's choice)
  int64_t step = 0;
  double seconds = 0;  // training wall time up to `step`
  std::vector<TrainLogRow> log;
  std::map<std::string, TrainParamState> params;  // by parameter name
};

// Limits the reader enforces (a run of 2^40 steps or a log longer than its steps is not real).
constexpr int64_t kMaxTrainSteps = int64_t(1) << 40;

// A tensor of the checkpoint to write: FP32 values of `shape`.
struct TrainTensor {
  std::string name;
  std::vector<int64_t> shape;
  const float* param = nullptr;
  const float* exp_avg = nullptr;  // null: no optimizer state for this parameter
  const float* exp_avg_sq = nullptr;
  int64_t adam_step = 0;
};

// Writes the checkpoint atomically (a kill mid-write leaves the previous one intact).
void write_train_checkpoint(const std::string& path, const std::string& fingerprint, int64_t step,
                            double seconds, const std::vector<TrainLogRow>& log,
                            const std::vector<TrainTensor>& tensors);

// Validates a parsed safetensors image as a dmx-train checkpoint; every problem is one
// CheckpointError line naming `origin`. The caller compares the fingerprint and the shapes.
TrainCheckpoint parse_train_checkpoint(const SafetensorsHeader& header, const std::string& origin);

}  // namespace dmx::quant
