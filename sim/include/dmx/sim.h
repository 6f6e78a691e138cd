// dMX sim: a SystemC cycle model of an MX accelerator and the cost tables built from it.
//
// The accelerator is an array of `units` x `lanes` mx_dot_unit instances (sim_unit.h), operand and
// output SRAM buffers (double-buffered), a DRAM model (bandwidth + latency) and a tiling scheduler
// for C[M,N] = A[M,K] x B[K,N] (A: activations, format `afmt`; B: weights, format `wfmt`, stored
// as N rows of K like a Linear layer's weight). Large GEMMs are costed by composing simulated tiles
// (cost_gemm); simulate_gemm runs every tile. See sim/README.md for the model and table schema.
#pragma once

#include <dmx/golden.h>
#include <dmx/util.h>

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace dmx::sim {

// ---- Architecture -------------------------------------------------------------------------------
// Output-stationary: a unit owns an output; weight-stationary: array rows hold weight blocks and
// activation rows stream down the accumulator chain; input-stationary: rows hold activation blocks
// and weight rows stream (the mirror of weight-stationary).
enum class Dataflow : uint8_t { OUTPUT_STATIONARY, WEIGHT_STATIONARY, INPUT_STATIONARY };
const char* dataflow_name(Dataflow d);
// "output_stationary"/"os", "weight_stationary"/"ws", "input_stationary"/"is".
std::optional<Dataflow> parse_dataflow(const std::string& s);

struct ArchConfig {
  std::string name;
  std::string origin;   // file the config came from (for messages)
  int units = 16;       // array rows (OS: output rows m; WS/IS: k-blocks of the chain)
  int lanes = 16;       // dot units per row (output columns), sharing the row's operand
  int unit_stages = 4;  // mx_dot_unit pipeline depth (latency in cycles)
  double clock_ghz = 1.0;
  double sram_a_kib = 512;  // activation buffer (double-buffered: a tile uses half)
  double sram_b_kib = 512;  // weight buffer (double-buffered)
  double sram_c_kib = 256;  // output / partial-sum buffer (double-buffered)
  double dram_gbps = 100;   // sustained DRAM bandwidth, GB/s (1e9 bytes/s)
  double dram_latency_ns = 100;
  // Blocks issued per cycle per array position for each (weight, activation) pair: by default
  // the slower operand's rate, min(throughput[w], throughput[a]); `throughput_pair` in the config
  // may set a pair. An array position with throughput t behaves as t units (t times wider).
  // Narrowing an operand never lowers a pair's throughput (checked when a config is parsed).
  std::array<std::array<int, kNumFormats>, kNumFormats> pair_tp{};
  // Energy: pJ per MAC for each (weight, activation) pair, per SRAM byte read and written, per
  // DRAM byte; static (leakage) power of the whole chip in mW, charged for every second a
  // workload takes. Narrowing an operand never raises a pair's MAC energy (checked).
  std::array<std::array<double, kNumFormats>, kNumFormats> mac_pj{};
  double sram_read_pj_per_byte = 1.0;
  double sram_write_pj_per_byte = 1.0;
  double dram_pj_per_byte = 20.0;
  double static_mw = 0.0;
  Dataflow dataflow = Dataflow::OUTPUT_STATIONARY;

  ArchConfig();
  int pair_throughput(MxFormat w, MxFormat a) const { return pair_tp[int(w)][int(a)]; }
  int max_throughput() const;  // over every pair: the widest the array ever gets
  // Sets every pair to min(t[w], t[a]) (the slower operand's rate).
  void set_format_throughput(const std::array<int, kNumFormats>& t);
  // Peak MACs per cycle for a format pair.
  double peak_macs_per_cycle(MxFormat w, MxFormat a) const {
    return double(units) * lanes * pair_throughput(w, a) * kBlockSize;
  }
  double dram_bytes_per_cycle() const { return dram_gbps / clock_ghz; }
  std::string fingerprint() const;  // every field that changes a simulated cycle or byte count
};

// Bad configuration or shape: the message names the file and the key.
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Parses an architecture config (JSON text); `origin` names it in errors. Unknown keys, wrong
// types, and out-of-range values (e.g. negative bandwidth) throw ConfigError.
ArchConfig parse_arch_json(const std::string& text, const std::string& origin);
ArchConfig load_arch(const std::string& path);
// Reads a config-sized input file (architecture, model config, topology): regular files only (a
// FIFO or a device would block), at most kMaxConfigBytes; ConfigError names the file otherwise.
inline constexpr int64_t kMaxConfigBytes = 16 << 20;
std::string read_config_file(const std::string& path, const char* what);
// Returns `text` (an arch JSON) with the dotted key set to `value` (parsed as JSON, else a string):
// what `dmx-sim sweep --vary` does per point. Throws ConfigError for a key the schema lacks.
std::string override_arch_key(const std::string& text, const std::string& origin,
                              const std::string& key, const std::string& value);

// ---- GEMMs --------------------------------------------------------------------------------------
struct GemmShape {
  int64_t m = 1, n = 1, k = 32;
};

// Energy of a GEMM or a workload by where it is spent (pJ).
struct EnergyBreakdown {
  double mac = 0, sram_read = 0, sram_write = 0, dram = 0, static_ = 0;
  double total() const { return mac + sram_read + sram_write + dram + static_; }
};

struct GemmCost {
  int64_t cycles = 0;
  double seconds = 0;
  int64_t dram_bytes = 0;        // DRAM reads + writes (packed operands: elements + 1 scale / 32)
  int64_t sram_read_bytes = 0;   // SRAM port reads: operands into the array, partial sums, C out
  int64_t sram_write_bytes = 0;  // SRAM port writes: fills from DRAM, results and partial sums
  int64_t macs = 0;              // M * N * K (K padded to a multiple of 32)
  EnergyBreakdown energy;
  double energy_pj = 0;         // energy.total()
  double utilization = 0;       // macs / (cycles * peak MACs per cycle of the pair)
  int64_t tiles = 0;            // SRAM tiles in the schedule
  int64_t simulated_tiles = 0;  // tiles actually cycle-simulated (composition caches the rest)
  int64_t sram_bytes() const { return sram_read_bytes + sram_write_bytes; }
  // Achieved DRAM bandwidth, GB/s (0 for a zero-time cost).
  double dram_gbps() const { return seconds > 0 ? double(dram_bytes) / seconds * 1e-9 : 0; }
};

// Where a GEMM's operands live. Fused attention keeps the scores on chip: QK^T writes C to SRAM
// only, and PV reads its A operand from there (its SRAM traffic counts, its DRAM traffic does not).
struct GemmPlacement {
  bool a_from_dram = true;
  bool c_to_dram = true;
  bool operator==(const GemmPlacement& o) const {
    return a_from_dram == o.a_from_dram && c_to_dram == o.c_to_dram;
  }
};

// Bytes of one 32-element block in a format, packed: elements + one E8M0 scale byte.
int64_t block_bytes(MxFormat f);

// The SRAM tiling chosen for a GEMM (elements; k in 32-element blocks). It depends on the shape
// and the architecture only, never on the operand formats: tiles are sized so that the widest
// format fits and rounded to the widest the array gets (lanes x max throughput). Narrowing an
// operand therefore keeps the schedule and only shortens transfers and issues, which makes every
// cost monotone in the operand widths (tests/sim: the 36-pair property test).
struct Tiling {
  int64_t mt = 0, nt = 0, kbt = 0;
};
Tiling choose_tiling(const ArchConfig& arch, const GemmShape& s);

// Full cycle simulation of every tile (timing only; the data path is not evaluated).
GemmCost simulate_gemm(const ArchConfig& arch, const GemmShape& s, MxFormat wfmt, MxFormat afmt,
                       const GemmPlacement& place = {});

// Cache of simulated tile windows, shared across GEMMs, layers and format pairs.
class TileCache {
 public:
  TileCache();
  ~TileCache();
  size_t size() const;
  int64_t simulations() const;  // windows simulated (cache misses)
  struct Impl;
  Impl& impl() { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

// Cost of a GEMM by composing simulated tile windows (see README: "Composition"); within 1% of
// simulate_gemm (tests/sim). `cache` may be null (a private one is used).
GemmCost cost_gemm(const ArchConfig& arch, const GemmShape& s, MxFormat wfmt, MxFormat afmt,
                   TileCache* cache = nullptr, const GemmPlacement& place = {});

// Cost of moving `read_bytes` from DRAM into SRAM and `write_bytes` from SRAM to DRAM with the
// array idle (embedding rows, KV-cache appends): the DRAM channel's time plus one latency.
GemmCost cost_transfer(const ArchConfig& arch, int64_t read_bytes, int64_t write_bytes);

// Functional run: the array computes real outputs. A: M rows of K codes (K a multiple of 32) and
// M * K/32 scales; B: N rows of K codes (weights, row-major along K) and N * K/32 scales.
// Returns C (M x N, FP32, row-major) and the cycle cost of the same schedule.
struct MxMatrix {
  MxFormat format;
  int64_t rows = 0, cols = 0;   // cols == K
  std::vector<uint8_t> codes;   // rows * cols, unpacked
  std::vector<uint8_t> scales;  // rows * cols / 32
};
struct GemmRun {
  GemmCost cost;
  std::vector<float> c;
};
GemmRun run_gemm(const ArchConfig& arch, const MxMatrix& a, const MxMatrix& b);

// ---- Workloads ----------------------------------------------------------------------------------
// A model's work as data: a list of operations (GEMMs and DRAM traffic), built once from a
// Hugging Face config.json (decoder_workload) or a topology CSV (topology_workload), and costed by
// cost_workload. dmx-sim and dmx-search both use these functions.

// The shape of a dense decoder (Hugging Face config.json fields).
struct ModelShape {
  std::string name;          // model_type (llama, qwen3) or the file name
  std::string architecture;  // architectures[0] when given (LlamaForCausalLM, ...)
  int64_t hidden_size = 0, intermediate_size = 0, num_hidden_layers = 0;
  int64_t num_attention_heads = 0, num_key_value_heads = 0, head_dim = 0;
  int64_t vocab_size = 0;
  bool tie_word_embeddings = false;
};
// Dense Llama-family decoders only (Llama, SmolLM2, Qwen3): a mixture-of-experts config (Mixtral,
// Qwen3-MoE, ...) or another family (GPT-2, ...) is refused with a ConfigError naming the key.
ModelShape parse_model_json(const std::string& text, const std::string& origin);
ModelShape load_model_config(const std::string& path);

enum class OpKind : uint8_t {
  Linear,     // a decoder Linear: its formats are the ones being assigned / swept
  LmHead,     // the output projection (fixed formats)
  AttnScore,  // Q K^T per KV-head group: A = the group's queries, B = the K cache
  AttnValue,  // P V per KV-head group: A = the probabilities (on chip), B = V^T from the cache
  Embedding,  // embedding rows read for the new tokens (DRAM traffic)
  KvWrite,    // the new tokens' K and V rows appended to the cache (DRAM traffic)
  Gemm,       // any other GEMM with fixed formats (a topology row that names its formats)
};
const char* op_kind_name(OpKind k);

// Network: a topology file's GEMMs, one inference (its "tokens" are inferences).
enum class PhaseKind : uint8_t { Prefill, Decode, Network };
struct Phase {
  PhaseKind kind = PhaseKind::Prefill;
  int64_t tokens = 512;  // prefill: prompt tokens per sequence (causal attention over them)
  int64_t context = 0;   // decode: keys each new token attends to (cache + itself)
  int64_t batch = 1;     // sequences processed together
  // Tokens the phase consumes or produces: batch x tokens (prefill), batch (decode, network).
  int64_t token_count() const { return kind == PhaseKind::Prefill ? batch * tokens : batch; }
  const char* name() const {
    return kind == PhaseKind::Prefill  ? "prefill"
           : kind == PhaseKind::Decode ? "decode"
                                       : "network";
  }
};

// Formats of the operations a search does not assign. Defaults follow the dMX paper (attention
// matmuls at a fixed 8-bit format) and keep lm_head, embeddings and the KV cache in MXFP8.
struct FixedFormats {
  MxFormat attention = MxFormat::E4M3;  // Q (A of QK^T) and P (A of PV)
  MxFormat kv_cache = MxFormat::E4M3;   // K and V as stored (B of QK^T and PV, KV appends)
  MxFormat lm_head_weight = MxFormat::E4M3;
  MxFormat lm_head_act = MxFormat::E4M3;
  MxFormat embedding = MxFormat::E4M3;  // untied embedding table; tied: lm_head_weight
};

struct WorkloadOp {
  OpKind kind = OpKind::Linear;
  std::string name;    // q_proj ... down_proj, lm_head, qk, pv, embed_tokens, kv_write
  std::string module;  // HF module path: model.layers.3.self_attn.q_proj
  int layer = -1;      // decoder layer, -1 outside the layers
  GemmShape shape;     // GEMMs: C[m, n] = A[m, k] x B[n, k]^T; B is the weight / the cache
  int64_t count = 1;   // identical instances run one after another (batch x KV heads, ...)
  MxFormat wfmt = MxFormat::E4M3, afmt = MxFormat::E4M3;  // fixed formats (not for Linear)
  GemmPlacement place;
  int64_t read_bytes = 0, write_bytes = 0;  // traffic ops (Embedding, KvWrite), per instance
  bool is_gemm() const { return kind != OpKind::Embedding && kind != OpKind::KvWrite; }
  bool assignable() const { return kind == OpKind::Linear; }
};

struct Workload {
  std::string name;
  Phase phase;
  std::vector<WorkloadOp> ops;
};

// The decoder's work for one phase. Prefill: every Linear at m = batch x tokens; causal attention
// in query chunks of `causal_chunk` tokens (chunk i attends to keys [0, (i+1) * chunk), as a
// block-causal fused kernel skips the masked blocks); lm_head for the last position of each
// sequence only (serving). Decode: Linears and lm_head at m = batch; attention of each sequence
// over `context` keys. Both: embedding rows of the new tokens, and their K/V rows appended to the
// cache in the KV format. Throws ConfigError for an impossible phase.
Workload decoder_workload(const ModelShape& model, const Phase& phase,
                          const FixedFormats& fixed = {}, int64_t causal_chunk = 128);

// An arbitrary network as a topology CSV (in the spirit of SCALE-Sim's topology files): a header
// `name,m,n,k[,count][,wfmt,afmt]`, then one GEMM per row. Rows with empty formats (or without the
// columns) are assignable Linears, swept over the format pairs; rows with formats are fixed.
Workload topology_workload(const std::string& csv_text, const std::string& origin);
Workload load_topology(const std::string& path);

inline constexpr const char* kCostTableSchema = "dmx-sim-cost-table";
inline constexpr int kCostTableVersion = 2;

// One costed operation: an assignable op once per (weight, activation) pair, a fixed op once.
// The cost covers all `count` instances.
struct CostRow {
  std::string workload;  // workload name
  Phase phase;
  WorkloadOp op;
  MxFormat wfmt = MxFormat::E4M3, afmt = MxFormat::E4M3;
  GemmCost cost;
};
// A per-Linear format assignment (dmx-search's assignment.json: {"layers": [{"layer": module,
// "weight_format": F, "act_format": F}, ...]}): module path -> (weight, activation) format.
using FormatAssignment = std::map<std::string, std::pair<MxFormat, MxFormat>>;
FormatAssignment parse_assignment_json(const std::string& text, const std::string& origin);
FormatAssignment load_assignment(const std::string& path);

struct TableOptions {
  std::vector<MxFormat> weight_formats{kAllFormats.begin(), kAllFormats.end()};
  std::vector<MxFormat> act_formats{kAllFormats.begin(), kAllFormats.end()};
  bool full_simulation = false;  // simulate every tile instead of composing (slow)
  // When set, each assignable op is costed once at its assigned pair (instead of every pair of
  // the lists); every Linear must be assigned and every assigned module must exist.
  const FormatAssignment* assignment = nullptr;
};
std::vector<CostRow> cost_workload(const Workload& w, const ArchConfig& arch,
                                   const TableOptions& opt = {}, TileCache* cache = nullptr);

// Whole-workload totals for one (weight, activation) pair of the assignable ops: the pair's rows
// plus every fixed row of the same phase.
struct CostTotal {
  std::string workload;
  Phase phase;
  bool has_pair = true;  // false: the workload has no assignable op (wfmt/afmt do not apply)
  MxFormat wfmt = MxFormat::E4M3, afmt = MxFormat::E4M3;
  GemmCost cost;  // sums (utilization: of the whole; tiles: summed)
  double tokens_per_s = 0;
  double joules_per_token = 0;
};
// `by_pair` false: one total per phase over every row (an assignment's mixed pairs).
std::vector<CostTotal> cost_totals(const std::vector<CostRow>& rows, bool by_pair = true);

std::string cost_table_csv(const std::vector<CostRow>& rows);
std::string cost_totals_csv(const std::vector<CostTotal>& totals);
std::string cost_table_json(const std::vector<CostRow>& rows, const std::vector<CostTotal>& totals,
                            const ArchConfig& arch, const ModelShape* model);
// Outputs are written with dmx::write_file_atomic (dmx/util.h): never half-written.

}  // namespace dmx::sim
