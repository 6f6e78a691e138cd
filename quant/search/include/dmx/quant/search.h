// dMX search (the dMX method, quant/search/README.md): per-layer MX format assignment for the
// decoder Linears of a CausalLM under an average-bit or simulator-cost budget, and its baselines
// (uniform, KL ranking).
#pragma once

#include <dmx/golden.h>
#include <dmx/sim.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "dmx/quant/model.h"
#include "dmx/quant/mx.h"

namespace dmx::dist {
class Group;  // dmx/dist.h
}

namespace dmx::quant {

// ---- Cost model ------------------------------------------------------------------------------
// A ladder of standard formats (rung k at offset position[k] of the continuous space) and, per
// decoder Linear, the cost of every (weight rung, activation rung) pair. The cost of a soft
// assignment is the bilinear interpolation of that table along the two offsets (piecewise linear
// between rungs), so it stays differentiable in b.
struct Ladder {
  FormatSpace space = FormatSpace::EM;
  std::vector<int> position;      // offsets of the rungs (EM: {0, 2} or {0, 1, 2}; E2M: {0, 2})
  std::vector<MxFormat> formats;  // the standard format at each rung
};
Ladder make_ladder(FormatSpace space, int rungs);

struct CostModel {
  std::string kind;  // "bits" or "sim"
  std::string unit;  // "bits", "cycles", "pJ", "bytes"
  Ladder ladder;
  // cost[layer][weight rung][act rung]; the model's total cost is the sum over layers. For the bits
  // model a layer's entry is (bits_w + bits_a) / 2 times its weight (1/L, or its share of the
  // parameters), so the total is the published average bit-width.
  std::vector<std::vector<std::vector<double>>> cost;
  // Cost of everything the search does not assign (sim model: attention, lm_head, embeddings, KV
  // cache), part of every total so that budgets and reports are whole-model figures.
  double fixed = 0;
  // Per-layer cost of any (weight, activation) format pair, on or off the ladder (uniform runs).
  std::function<std::vector<double>(MxFormat, MxFormat)> pair_costs;
  double total_low() const;   // every layer at the lowest rung
  double total_high() const;  // every layer at the highest rung
  double total(const std::vector<int>& wrung, const std::vector<int>& arung) const;
  // The total as a bit-equivalent on [bits(low), bits(high)] (the bits model: itself): the
  // regularizer's unit, so lambda means the same for every cost model.
  double to_bits_equivalent(double total) const;
  double fraction(double total) const;  // (total - low) / (high - low)
};

// Per-layer parameter counts (in * out) of the decoder Linears, model order.
std::vector<int64_t> linear_param_counts(const CausalLM& model);
CostModel bits_cost_model(const CausalLM& model, const Ladder& ladder, bool weighted);
enum class SimMetric { Cycles, Energy, DramBytes };
std::optional<SimMetric> parse_metric(const std::string& s);
const char* metric_name(SimMetric m);

// What the simulator's cost stands for. prefill: a prompt of `tokens` tokens; decode: one new
// token per sequence at `context` keys; both: one request, the prefill of `tokens` tokens plus
// `generate` decode steps, each costed at the mean context tokens + generate / 2 (attention is
// linear in the context, so the sum over the steps equals generate x the cost at the mean).
// `batch` sequences in every phase. Unassigned operations keep `fixed` formats.
struct SimCostOptions {
  SimMetric metric = SimMetric::Cycles;
  std::string phase = "both";  // prefill | decode | both
  int64_t tokens = 128;        // prefill tokens per sequence
  int64_t generate = 128;      // decode steps (both)
  int64_t context = 0;         // decode context; 0: tokens (decode) or tokens + generate / 2 (both)
  int64_t batch = 1;
  sim::FixedFormats fixed;
  // The phases with their weights (prefill x 1, decode x generate for `both`); throws
  // std::invalid_argument for a bad phase or range.
  std::vector<std::pair<sim::Phase, double>> phases() const;
};
// Costs this model's workload (sim::decoder_workload of its config) on `arch` for the ladder's
// pairs; every decoder Linear of `model` must be an assignable op of the workload.
CostModel sim_cost_model(const CausalLM& model, const sim::ArchConfig& arch,
                         const SimCostOptions& opt, const Ladder& ladder);

// Budget from the command line: a plain number is avg bits (bits model) or a fraction of the
// [all-low, all-high] range (sim model); "<number><unit>" is absolute (cycles, Mcycles, pJ, nJ,
// uJ, mJ, B, KB, MB, GB, KiB, MiB, GiB, bits). Returns the absolute total; throws
// std::invalid_argument with a one-line message.
double parse_budget(const std::string& text, const CostModel& cm);

// ---- Assignments -------------------------------------------------------------------------------
struct LayerAssignment {
  std::string name;
  MxFormat wfmt = MxFormat::E2M1, afmt = MxFormat::E2M1;
  int wrung = 0, arung = 0;
  double cost = 0;
};
struct Assignment {
  std::vector<LayerAssignment> layers;
  double total_cost = 0;
  double avg_bits = 0;           // unweighted mean of weight and activation bits
  double avg_bits_weighted = 0;  // weighted by parameter count
};
Assignment make_assignment(const CausalLM& model, const CostModel& cm,
                           const std::vector<int>& wrung, const std::vector<int>& arung);
// Puts the assignment's fixed formats on the model's decoder Linears (wrapping them).
void apply_assignment(CausalLM& model, const Assignment& a);

// ---- Data ------------------------------------------------------------------------------------
// Non-overlapping windows [n, seqlen] (int64) of `tokens`, at most `max_windows` (0: all).
// seed 0: the text's first windows (what every run took before seeds sampled, so seed-0 results
// stay comparable with them); seed s >= 1: `max_windows` of all the text's windows drawn at random
// without replacement, in draw order. A smaller count with the same seed gives a prefix of the
// larger draw (the KL ranking's windows are the first of the calibration windows).
at::Tensor make_windows(const std::vector<int32_t>& tokens, int64_t seqlen, int64_t max_windows,
                        uint64_t seed = 0);

// ---- Methods ---------------------------------------------------------------------------------
struct SearchProgress {
  int step = 0, steps = 0;
  double loss = 0, ce = 0, soft_bits = 0, soft_fraction = 0, t_prime = 0, steps_per_s = 0;
  bool resumed = false;
};

struct DmxOptions {
  int steps = 400;
  double lr = 1.5, momentum = 0.99;  // SGD, Nesterov
  double lambda = 5.0;
  double t_start = 0.4, t_end = 20.0, hold = 0.6, t_scale = 10.0;  // T' = t_scale * T
  LearnedOffsets offsets;
  int64_t batch = 1;       // calibration windows per step
  uint64_t seed = 0;       // order of the calibration windows
  std::string checkpoint;  // resumable state file ("" = none)
  int checkpoint_every = 10;
  std::function<void(const SearchProgress&)> progress;
  // Test hook: stop (as if killed) after this many steps of this run; 0 = never.
  int stop_after = 0;
  // Budget projection after the hard threshold (see project_to_budget); off = the paper's plain
  // threshold. Tolerance as a fraction of the [all-low, all-high] cost range.
  bool budget_projection = true;
  // Upper end of the box theta is projected onto after each step (0: none, the paper's unbounded
  // theta). With a bound the annealed b keeps a non-zero gradient, so the hinge can still pull a
  // layer that rose early back down instead of it staying locked at the top rung.
  double theta_max = 0.0;
  double budget_tolerance = 0.02;
  // Task loss: "ce" (the paper's next-token cross-entropy on the calibration labels) or "kd"
  // (KL(p_fp32 || p_quantized) per token against the unquantized model's distribution,
  // precomputed once for the calibration windows): no label noise, zero at the FP32 model.
  std::string loss = "ce";
  // Data parallel (dmx/dist.h; null: one process). `batch` is the global batch: each step's
  // windows are those of a single process, rank r takes the r-th of `size()` equal contiguous
  // parts (batch must be a multiple of the world size), the offsets' gradients and the task loss
  // are averaged over the ranks (FP64 all-reduce) and every rank applies the same update. Rank 0
  // alone reads and writes the checkpoint (it sends the state to the others); it holds no world
  // size, so a run may resume on another number of ranks.
  dist::Group* group = nullptr;
  // Windows per forward/backward pass (0: each rank's whole share, batch / world size). With
  // more than one pass per step the step's gradient is the mean over the passes of their
  // gradients (of the pass's mean task loss plus the regularizer), added in pass order in FP64:
  // the same for every world size that divides batch / micro_batch, so a run on N ranks equals
  // a one-process run with micro_batch = batch / N bit for bit. One pass (micro_batch = batch,
  // one process) keeps its float gradients as they are.
  int64_t micro_batch = 0;
};
// The regularizer's pieces (differentiable in the offsets): the soft total cost of the current
// annealed offsets of `lins` (bilinear over the rungs), as a bit-equivalent, and the hinge
// lambda * max(0, bits - target_bits).
at::Tensor soft_total_cost(const std::vector<MxLinearPtr>& lins, const CostModel& cm);
at::Tensor soft_bits_equivalent(const at::Tensor& soft_total, const CostModel& cm);
at::Tensor hinge_regularizer(const at::Tensor& soft_bits, double target_bits, double lambda);

// T' at a step: T = t_start for the first `hold` of the steps, then geometric to t_end.
double temperature_at(const DmxOptions& o, int step);

// Moves a discrete assignment onto the budget: while |total - budget| > tolerance * (high - low),
// takes the single-rung move in the needed direction (tied: weight and activation together)
// whose offset lies closest to the threshold it crosses (the least confident decision) among the
// moves that bring the total closer to the budget. Stops inside the tolerance or when no move
// helps. b_w/b_a are the offsets |theta| (model order); wrung/arung are updated in place.
// Returns the number of moves.
int project_to_budget(const CostModel& cm, const std::vector<double>& b_w,
                      const std::vector<double>& b_a, bool tied, double budget, double tolerance,
                      std::vector<int>& wrung, std::vector<int>& arung);

struct DmxResult {
  Assignment assignment;
  Assignment threshold_assignment;  // the plain hard threshold, before the budget projection
  int projection_moves = 0;
  int steps_done = 0;
  bool resumed = false, stopped = false;
  double seconds = 0, steps_per_s = 0;
  std::vector<double> theta_w, theta_a;
  // The task loss and total loss of every step this call ran (steps first_step + 1, ...), the
  // mean over the global batch.
  int first_step = 0;
  std::vector<double> ce_curve, loss_curve;
};
// Trains the offsets of every decoder Linear (weights frozen; SGD with Nesterov momentum, theta
// projected onto theta >= 0 after each step, see src/dmx.cc) so that CE + lambda *
// max(0, cost_bits - target_bits) falls, then discretizes them. `budget` is the absolute total in
// the cost model's unit. The model's Linears stay wrapped with the discrete formats applied.
DmxResult dmx_search(CausalLM& model, const at::Tensor& calib_windows, const CostModel& cm,
                     double budget, const DmxOptions& opt);

// Per-layer sensitivity: KL(p_ref || p_q) of the next-token distribution, averaged over tokens,
// with only that layer's weights and activations quantized to `low` (model order).
std::vector<double> kl_sensitivity(CausalLM& model, const at::Tensor& windows, MxFormat low);
// Promotes layers from the lowest to the highest rung in decreasing sensitivity while the total
// stays within the budget (a layer that does not fit is skipped, a later cheaper one may fit).
Assignment kl_assignment(const CausalLM& model, const CostModel& cm,
                         const std::vector<double>& sensitivity, double budget);

Assignment uniform_assignment(const CausalLM& model, const CostModel& cm, MxFormat wfmt,
                              MxFormat afmt);

}  // namespace dmx::quant
