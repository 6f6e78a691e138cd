// dMX sim: a SystemC cycle model of an MX accelerator and the cost tables built from it.
//
// The accelerator is an array of `units` x `lanes` mx_dot_unit instances (sim_unit.h), operand and
// output SRAM buffers (double-buffered), a DRAM model (bandwidth + latency) and a tiling scheduler
// for C[M,N] = A[M,K] x B[K,N] (A: activations, format `afmt`; B: weights, format `wfmt`, stored
// as N rows of K like a Linear layer's weight). Large GEMMs are costed by composing simulated tiles
// (cost_gemm); simulate_gemm runs every tile. See sim/README.md for the model and table schema.
#pragma once

#include <dmx/golden.h>

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace dmx::sim {

// ---- Architecture -------------------------------------------------------------------------------
enum class Dataflow : uint8_t { OUTPUT_STATIONARY, WEIGHT_STATIONARY };
const char* dataflow_name(Dataflow d);

struct ArchConfig {
  std::string name;
  std::string origin;         // file the config came from (for messages)
  int units = 16;             // array rows (OS: output rows m; WS: k-blocks of the weight chain)
  int lanes = 16;             // dot units per row (output columns n), sharing the row's operand
  int unit_stages = 4;        // mx_dot_unit pipeline depth (latency in cycles)
  double clock_ghz = 1.0;
  double sram_a_kib = 512;    // activation buffer (double-buffered: a tile uses half)
  double sram_b_kib = 512;    // weight buffer (double-buffered)
  double sram_c_kib = 256;    // output / partial-sum buffer (double-buffered)
  double dram_gbps = 100;     // sustained DRAM bandwidth, GB/s (1e9 bytes/s)
  double dram_latency_ns = 100;
  // Blocks issued per cycle per array position for a format; a pair runs at min(tw, ta). An
  // array position with throughput t behaves as t units (the array is t times wider).
  std::array<int, kNumFormats> throughput{1, 1, 1, 1, 1, 1};
  // Energy: pJ per MAC for each (weight, activation) format pair, per SRAM byte, per DRAM byte.
  std::array<std::array<double, kNumFormats>, kNumFormats> mac_pj{};
  double sram_pj_per_byte = 1.0;
  double dram_pj_per_byte = 20.0;
  Dataflow dataflow = Dataflow::OUTPUT_STATIONARY;

  int pair_throughput(MxFormat w, MxFormat a) const {
    int tw = throughput[int(w)], ta = throughput[int(a)];
    return tw < ta ? tw : ta;
  }
  // Peak MACs per cycle for a format pair.
  double peak_macs_per_cycle(MxFormat w, MxFormat a) const {
    return double(units) * lanes * pair_throughput(w, a) * kBlockSize;
  }
  std::string fingerprint() const;  // every field that changes a simulation result
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
// Returns `text` (an arch JSON) with the dotted key set to `value` (parsed as JSON, else a string):
// what `dmx-sim sweep --vary` does per point. Throws ConfigError for a key the schema lacks.
std::string override_arch_key(const std::string& text, const std::string& origin,
                              const std::string& key, const std::string& value);

// ---- GEMMs --------------------------------------------------------------------------------------
struct GemmShape {
  int64_t m = 1, n = 1, k = 32;
};

struct GemmCost {
  int64_t cycles = 0;
  double seconds = 0;
  int64_t dram_bytes = 0;   // DRAM reads + writes (packed operands: elements + 1 scale byte / 32)
  int64_t sram_bytes = 0;   // SRAM port traffic: fills, array reads, partial sums, write-back
  int64_t macs = 0;         // M * N * K (K padded to a multiple of 32)
  double energy_pj = 0;
  double utilization = 0;   // macs / (cycles * peak MACs per cycle of the pair)
  int64_t tiles = 0;        // SRAM tiles in the schedule
  int64_t simulated_tiles = 0;  // tiles actually cycle-simulated (composition caches the rest)
};

// Bytes of one 32-element block in a format, packed: elements + one E8M0 scale byte.
int64_t block_bytes(MxFormat f);

// The SRAM tiling chosen for a GEMM (elements; k in 32-element blocks).
struct Tiling {
  int64_t mt = 0, nt = 0, kbt = 0;
};
Tiling choose_tiling(const ArchConfig& arch, const GemmShape& s, MxFormat wfmt, MxFormat afmt);

// Full cycle simulation of every tile (timing only; the data path is not evaluated).
GemmCost simulate_gemm(const ArchConfig& arch, const GemmShape& s, MxFormat wfmt, MxFormat afmt);

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
                   TileCache* cache = nullptr);

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

// ---- Models and cost tables ---------------------------------------------------------------------
// The Linear-layer shape of a decoder (Hugging Face config.json fields).
struct ModelShape {
  std::string name;  // model_type or the file name
  int64_t hidden_size = 0, intermediate_size = 0, num_hidden_layers = 0;
  int64_t num_attention_heads = 0, num_key_value_heads = 0, head_dim = 0;
};
ModelShape parse_model_json(const std::string& text, const std::string& origin);
ModelShape load_model_config(const std::string& path);

struct LayerGemm {
  std::string name;    // q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj
  std::string module;  // HF module path: model.layers.3.self_attn.q_proj
  int layer = 0;
  int64_t in_features = 0, out_features = 0;
};
std::vector<LayerGemm> model_gemms(const ModelShape& m);

inline constexpr const char* kCostTableSchema = "dmx-sim-cost-table";
inline constexpr int kCostTableVersion = 1;

struct CostRow {
  std::string phase;  // "prefill" (M = tokens) or "decode" (M = 1)
  LayerGemm gemm;
  GemmShape shape;
  MxFormat wfmt, afmt;
  GemmCost cost;
};
struct TableOptions {
  std::vector<MxFormat> weight_formats{kAllFormats.begin(), kAllFormats.end()};
  std::vector<MxFormat> act_formats{kAllFormats.begin(), kAllFormats.end()};
  bool prefill = true, decode = true;
  bool full_simulation = false;  // simulate every tile instead of composing (slow)
};
// One row per (phase, Linear layer, weight format, activation format).
std::vector<CostRow> cost_table(const ModelShape& model, const ArchConfig& arch, int64_t tokens,
                                const TableOptions& opt = {}, TileCache* cache = nullptr);

std::string cost_table_csv(const std::vector<CostRow>& rows);
std::string cost_table_json(const std::vector<CostRow>& rows, const ArchConfig& arch,
                            const ModelShape* model, int64_t tokens);
// Writes `text` to `path` through a temporary file and a rename (never half-written).
void write_file_atomic(const std::string& path, const std::string& text);

}  // namespace dmx::sim
