// Tiling, composition of simulated tiles, functional runs, model configs and cost tables.
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <unordered_map>

#include "accelerator.h"
#include "dmx/sim.h"

namespace dmx::sim {

using detail::TileJob;

int64_t block_bytes(MxFormat f) { return int64_t(packed_bytes(f, kBlockSize)) + 1; }

namespace {
int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
// Largest value <= x that is a multiple of `q` when x >= q (else x itself), and >= 1.
int64_t round_down_to(int64_t x, int64_t q) {
  if (x >= q) x = x / q * q;
  return x < 1 ? 1 : x;
}
}  // namespace

Tiling choose_tiling(const ArchConfig& a, const GemmShape& s, MxFormat wfmt, MxFormat afmt) {
  const int64_t KB = ceil_div(s.k, kBlockSize);
  const int64_t bba = block_bytes(afmt), bbw = block_bytes(wfmt);
  // Each buffer is double-buffered: a tile may use half of it.
  const double cap_a = a.sram_a_kib * 1024 / 2, cap_b = a.sram_b_kib * 1024 / 2;
  const double cap_c = a.sram_c_kib * 1024 / 2;
  const int64_t R = a.units, Ce = int64_t(a.lanes) * a.pair_throughput(wfmt, afmt);
  const int64_t mt0 = std::min<int64_t>(s.m, R), nt0 = std::min<int64_t>(s.n, Ce);
  // For each candidate K depth (whole K, then halves), size M and N tiles to fill the buffers,
  // and keep the candidate with the least DRAM traffic (A is re-read per N tile unless K fits in
  // one tile; B is re-read per M tile).
  Tiling best;
  double best_traffic = 0;
  for (int64_t kbt = KB;; kbt = ceil_div(kbt, 2)) {
    Tiling t;
    t.kbt = kbt;
    t.mt = round_down_to(std::min<int64_t>(s.m, int64_t(cap_a / double(kbt * bba))), R);
    t.nt = round_down_to(std::min<int64_t>(s.n, int64_t(cap_b / double(kbt * bbw))), Ce);
    while (double(t.mt) * t.nt * 4 > cap_c && (t.mt > 1 || t.nt > 1)) {
      if (t.nt >= t.mt && t.nt > 1)
        t.nt = round_down_to(t.nt / 2, Ce);
      else
        t.mt = round_down_to(t.mt / 2, R);
    }
    const int64_t MT = ceil_div(s.m, t.mt), NT = ceil_div(s.n, t.nt), KT = ceil_div(KB, kbt);
    const bool fits = mt0 * kbt * bba <= cap_a && nt0 * kbt * bbw <= cap_b;
    const double traffic = double(s.m * KB * bba) * (KT == 1 ? 1 : NT) +
                           double(s.n * KB * bbw) * (KT == 1 && NT == 1 ? 1 : MT);
    if ((fits || kbt == 1) && (best.kbt == 0 || traffic < best_traffic)) {
      best = t;
      best_traffic = traffic;
    }
    if (kbt == 1) break;
  }
  return best;
}

namespace detail {
std::vector<TileJob> make_tiles(const ArchConfig& a, const GemmShape& s, MxFormat wfmt,
                                MxFormat afmt) {
  const Tiling tl = choose_tiling(a, s, wfmt, afmt);
  const int64_t KB = ceil_div(s.k, kBlockSize);
  const int64_t MT = ceil_div(s.m, tl.mt), NT = ceil_div(s.n, tl.nt), KT = ceil_div(KB, tl.kbt);
  std::vector<TileJob> tiles;
  tiles.reserve(size_t(MT * NT * KT));
  for (int64_t mi = 0; mi < MT; ++mi)
    for (int64_t ni = 0; ni < NT; ++ni)
      for (int64_t ki = 0; ki < KT; ++ki) {
        TileJob t;
        t.m0 = mi * tl.mt;
        t.mt = std::min(tl.mt, s.m - t.m0);
        t.n0 = ni * tl.nt;
        t.nt = std::min(tl.nt, s.n - t.n0);
        t.kb0 = ki * tl.kbt;
        t.kbt = std::min(tl.kbt, KB - t.kb0);
        t.load_a = !(KT == 1 && ni > 0);
        t.load_b = !(KT == 1 && NT == 1 && mi > 0);
        t.first_k = ki == 0;
        t.write_c = ki == KT - 1;
        tiles.push_back(t);
      }
  return tiles;
}
}  // namespace detail

namespace {

void check_shape(const GemmShape& s, const std::string& where) {
  if (s.m < 1 || s.n < 1 || s.k < 1)
    throw ConfigError(where + ": GEMM shape must have m, n, k >= 1 (got m=" +
                      std::to_string(s.m) + " n=" + std::to_string(s.n) +
                      " k=" + std::to_string(s.k) + ")");
}

GemmCost finish_cost(const ArchConfig& a, const GemmShape& s, MxFormat w, MxFormat f,
                     const detail::JobStats& st, int64_t tiles, int64_t simulated) {
  GemmCost c;
  c.cycles = st.cycles;
  c.seconds = double(st.cycles) / (a.clock_ghz * 1e9);
  c.dram_bytes = st.dram_bytes;
  c.sram_bytes = st.sram_bytes;
  c.macs = s.m * s.n * ceil_div(s.k, kBlockSize) * kBlockSize;
  c.energy_pj = double(c.macs) * a.mac_pj[int(w)][int(f)] + double(c.sram_bytes) * a.sram_pj_per_byte +
                double(c.dram_bytes) * a.dram_pj_per_byte;
  c.utilization = st.cycles ? double(c.macs) / (double(st.cycles) * a.peak_macs_per_cycle(w, f)) : 0;
  c.tiles = tiles;
  c.simulated_tiles = simulated;
  return c;
}

// A tile's timing signature: everything about it that the timing simulation depends on.
struct Sig {
  int64_t mt, nt, kbt;
  uint8_t flags;
  bool operator==(const Sig& o) const {
    return mt == o.mt && nt == o.nt && kbt == o.kbt && flags == o.flags;
  }
};
Sig sig_of(const TileJob& t) {
  return {t.mt, t.nt, t.kbt,
          uint8_t(t.load_a | (t.load_b << 1) | (t.first_k << 2) | (t.write_c << 3))};
}
TileJob tile_of(const Sig& s) {
  TileJob t;
  t.mt = s.mt;
  t.nt = s.nt;
  t.kbt = s.kbt;
  t.load_a = s.flags & 1;
  t.load_b = s.flags & 2;
  t.first_k = s.flags & 4;
  t.write_c = s.flags & 8;
  return t;
}

}  // namespace

struct TileCache::Impl {
  std::unordered_map<std::string, detail::JobStats> windows;
  std::unordered_map<std::string, GemmCost> gemms;
  int64_t simulations = 0;

  detail::JobStats window(const ArchConfig& a, MxFormat w, MxFormat f,
                          const std::vector<Sig>& sigs, int64_t* simulated_tiles) {
    std::ostringstream key;
    key << a.fingerprint() << '|' << int(w) << ',' << int(f);
    for (const Sig& s : sigs) key << '|' << s.mt << ',' << s.nt << ',' << s.kbt << ',' << int(s.flags);
    auto it = windows.find(key.str());
    if (it != windows.end()) return it->second;
    std::vector<TileJob> tiles;
    for (const Sig& s : sigs) tiles.push_back(tile_of(s));
    detail::JobStats st = detail::run_job(a, w, f, tiles);
    ++simulations;
    *simulated_tiles += int64_t(tiles.size());
    windows.emplace(key.str(), st);
    return st;
  }
};

TileCache::TileCache() : impl_(std::make_unique<Impl>()) {}
TileCache::~TileCache() = default;
size_t TileCache::size() const { return impl_->windows.size(); }
int64_t TileCache::simulations() const { return impl_->simulations; }

GemmCost simulate_gemm(const ArchConfig& a, const GemmShape& s, MxFormat w, MxFormat f) {
  check_shape(s, a.origin);
  auto tiles = detail::make_tiles(a, s, w, f);
  detail::JobStats st = detail::run_job(a, w, f, tiles);
  return finish_cost(a, s, w, f, st, int64_t(tiles.size()), int64_t(tiles.size()));
}

// Composition: the schedule is a double-buffered pipeline whose state depends on the last few
// tiles, so a tile's cost is its marginal cost after its C = 3 predecessors:
//   T(s_0..s_n-1) ~= T(s_0..s_C-1) + sum_{i>=C} [T(s_i-C..s_i) - T(s_i-C..s_i-1)]
// where T(window) is a cycle simulation of just those tiles, cached by the tiles' signatures.
// Bytes are additive, so they compose exactly; cycles are checked against simulate_gemm (tests).
GemmCost cost_gemm(const ArchConfig& a, const GemmShape& s, MxFormat w, MxFormat f,
                   TileCache* cache) {
  check_shape(s, a.origin);
  TileCache local;
  TileCache::Impl& c = (cache ? cache : &local)->impl();
  std::ostringstream gkey;
  gkey << a.fingerprint() << '|' << int(w) << ',' << int(f) << '|' << s.m << ',' << s.n << ','
       << s.k;
  auto hit = c.gemms.find(gkey.str());
  if (hit != c.gemms.end()) {
    GemmCost r = hit->second;
    GemmCost e = finish_cost(a, s, w, f, {r.cycles, r.dram_bytes, r.sram_bytes}, r.tiles, 0);
    return e;  // energy recomputed: the cache key leaves energy parameters out
  }
  const auto tiles = detail::make_tiles(a, s, w, f);
  std::vector<Sig> sigs;
  sigs.reserve(tiles.size());
  for (const auto& t : tiles) sigs.push_back(sig_of(t));
  int64_t simulated = 0;
  detail::JobStats total;
  constexpr size_t kContext = 3;  // tiles of history that a tile's marginal cost depends on
  if (sigs.size() <= kContext + 1) {
    total = c.window(a, w, f, sigs, &simulated);
  } else {
    total = c.window(a, w, f, {sigs.begin(), sigs.begin() + kContext}, &simulated);
    // Runs of identical windows are frequent; remember the last marginal.
    std::vector<Sig> last;
    detail::JobStats marg;
    for (size_t i = kContext; i < sigs.size(); ++i) {
      std::vector<Sig> win(sigs.begin() + (i - kContext), sigs.begin() + i + 1);
      if (win != last) {
        detail::JobStats with = c.window(a, w, f, win, &simulated);
        detail::JobStats without =
            c.window(a, w, f, {win.begin(), win.end() - 1}, &simulated);
        marg = {with.cycles - without.cycles, with.dram_bytes - without.dram_bytes,
                with.sram_bytes - without.sram_bytes};
        last = win;
      }
      total.cycles += marg.cycles;
      total.dram_bytes += marg.dram_bytes;
      total.sram_bytes += marg.sram_bytes;
    }
  }
  GemmCost r = finish_cost(a, s, w, f, total, int64_t(tiles.size()), simulated);
  c.gemms.emplace(gkey.str(), r);
  return r;
}

GemmRun run_gemm(const ArchConfig& a, const MxMatrix& A, const MxMatrix& B) {
  if (A.cols != B.cols || A.cols % kBlockSize != 0 || A.cols <= 0)
    throw ConfigError("run_gemm: shape mismatch: A is " + std::to_string(A.rows) + "x" +
                      std::to_string(A.cols) + ", B (weights, N x K) is " +
                      std::to_string(B.rows) + "x" + std::to_string(B.cols) +
                      " (K must match and be a multiple of 32)");
  const size_t kb = size_t(A.cols / kBlockSize);
  if (A.codes.size() != size_t(A.rows * A.cols) || B.codes.size() != size_t(B.rows * B.cols) ||
      A.scales.size() != size_t(A.rows) * kb || B.scales.size() != size_t(B.rows) * kb)
    throw ConfigError("run_gemm: operand buffers do not match their shapes");
  GemmShape s{A.rows, B.rows, A.cols};
  auto tiles = detail::make_tiles(a, s, B.format, A.format);
  std::vector<uint32_t> c_bits(size_t(s.m * s.n), 0x80000000u);
  detail::JobData d{&A, &B, &c_bits};
  detail::JobStats st = detail::run_job(a, B.format, A.format, tiles, d);
  GemmRun r;
  r.cost = finish_cost(a, s, B.format, A.format, st, int64_t(tiles.size()), int64_t(tiles.size()));
  r.c.resize(c_bits.size());
  for (size_t i = 0; i < c_bits.size(); ++i) r.c[i] = fp32_from_bits(c_bits[i]);
  return r;
}

// ---- models -------------------------------------------------------------------------------------
ModelShape parse_model_json(const std::string& text, const std::string& origin) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    throw ConfigError(origin + ": not valid JSON: " + e.what());
  }
  if (!j.is_object()) throw ConfigError(origin + ": a config.json must be a JSON object");
  if (j.contains("text_config") && !j.contains("hidden_size")) j = j["text_config"];
  auto get = [&](const char* key, int64_t dflt, bool required) -> int64_t {
    if (!j.contains(key) || j[key].is_null()) {
      if (required) throw ConfigError(origin + ": key '" + key + "': missing");
      return dflt;
    }
    if (!j[key].is_number_integer() || j[key].get<int64_t>() < 1)
      throw ConfigError(origin + ": key '" + key + "': must be a positive integer, got " +
                        j[key].dump());
    return j[key].get<int64_t>();
  };
  ModelShape m;
  m.name = j.contains("model_type") && j["model_type"].is_string()
               ? j["model_type"].get<std::string>()
               : origin;
  m.hidden_size = get("hidden_size", 0, true);
  m.intermediate_size = get("intermediate_size", 0, true);
  m.num_hidden_layers = get("num_hidden_layers", 0, true);
  m.num_attention_heads = get("num_attention_heads", 0, true);
  m.num_key_value_heads = get("num_key_value_heads", m.num_attention_heads, false);
  if (!j.contains("head_dim") || j["head_dim"].is_null()) {
    if (m.hidden_size % m.num_attention_heads != 0)
      throw ConfigError(origin + ": key 'head_dim': missing and hidden_size (" +
                        std::to_string(m.hidden_size) + ") is not a multiple of " +
                        "num_attention_heads (" + std::to_string(m.num_attention_heads) + ")");
    m.head_dim = m.hidden_size / m.num_attention_heads;
  } else {
    m.head_dim = get("head_dim", 0, true);
  }
  if (m.num_attention_heads % m.num_key_value_heads != 0)
    throw ConfigError(origin + ": key 'num_key_value_heads': shape mismatch: " +
                      std::to_string(m.num_key_value_heads) + " does not divide " +
                      "num_attention_heads (" + std::to_string(m.num_attention_heads) + ")");
  return m;
}

ModelShape load_model_config(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw ConfigError(path + ": cannot open model config");
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_model_json(ss.str(), path);
}

std::vector<LayerGemm> model_gemms(const ModelShape& m) {
  std::vector<LayerGemm> out;
  const int64_t h = m.hidden_size, q = m.num_attention_heads * m.head_dim,
                kv = m.num_key_value_heads * m.head_dim, ff = m.intermediate_size;
  for (int64_t l = 0; l < m.num_hidden_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    auto add = [&](const char* name, const char* block, int64_t in, int64_t outf) {
      out.push_back({name, p + block + "." + name, int(l), in, outf});
    };
    add("q_proj", "self_attn", h, q);
    add("k_proj", "self_attn", h, kv);
    add("v_proj", "self_attn", h, kv);
    add("o_proj", "self_attn", q, h);
    add("gate_proj", "mlp", h, ff);
    add("up_proj", "mlp", h, ff);
    add("down_proj", "mlp", ff, h);
  }
  return out;
}

std::vector<CostRow> cost_table(const ModelShape& model, const ArchConfig& arch, int64_t tokens,
                                const TableOptions& opt, TileCache* cache) {
  if (tokens < 1) throw ConfigError("--tokens must be >= 1 (got " + std::to_string(tokens) + ")");
  TileCache local;
  TileCache* c = cache ? cache : &local;
  std::vector<CostRow> rows;
  const auto gemms = model_gemms(model);
  for (int ph = 0; ph < 2; ++ph) {
    if ((ph == 0 && !opt.prefill) || (ph == 1 && !opt.decode)) continue;
    const int64_t m = ph == 0 ? tokens : 1;
    for (const LayerGemm& g : gemms)
      for (MxFormat w : opt.weight_formats)
        for (MxFormat f : opt.act_formats) {
          CostRow r;
          r.phase = ph == 0 ? "prefill" : "decode";
          r.gemm = g;
          r.shape = {m, g.out_features, g.in_features};
          r.wfmt = w;
          r.afmt = f;
          r.cost = opt.full_simulation ? simulate_gemm(arch, r.shape, w, f)
                                       : cost_gemm(arch, r.shape, w, f, c);
          rows.push_back(r);
        }
  }
  return rows;
}

std::string cost_table_csv(const std::vector<CostRow>& rows) {
  std::ostringstream os;
  os.precision(10);
  os << "version,phase,layer,gemm,module,m,n,k,wfmt,afmt,cycles,seconds,dram_bytes,sram_bytes,"
        "macs,energy_pj,utilization\n";
  for (const CostRow& r : rows)
    os << kCostTableVersion << ',' << r.phase << ',' << r.gemm.layer << ',' << r.gemm.name << ','
       << r.gemm.module << ',' << r.shape.m << ',' << r.shape.n << ',' << r.shape.k << ','
       << format_name(r.wfmt) << ',' << format_name(r.afmt) << ',' << r.cost.cycles << ','
       << r.cost.seconds << ',' << r.cost.dram_bytes << ',' << r.cost.sram_bytes << ','
       << r.cost.macs << ',' << r.cost.energy_pj << ',' << r.cost.utilization << '\n';
  return os.str();
}

std::string cost_table_json(const std::vector<CostRow>& rows, const ArchConfig& arch,
                            const ModelShape* model, int64_t tokens) {
  nlohmann::json j;
  j["schema"] = kCostTableSchema;
  j["version"] = kCostTableVersion;
  j["arch"] = {{"name", arch.name},          {"file", arch.origin},
               {"units", arch.units},        {"lanes", arch.lanes},
               {"unit_stages", arch.unit_stages}, {"clock_ghz", arch.clock_ghz},
               {"dram_gbps", arch.dram_gbps}, {"dataflow", dataflow_name(arch.dataflow)}};
  if (model)
    j["model"] = {{"name", model->name},
                  {"hidden_size", model->hidden_size},
                  {"intermediate_size", model->intermediate_size},
                  {"num_hidden_layers", model->num_hidden_layers},
                  {"num_attention_heads", model->num_attention_heads},
                  {"num_key_value_heads", model->num_key_value_heads},
                  {"head_dim", model->head_dim}};
  j["tokens"] = tokens;
  auto& arr = j["rows"] = nlohmann::json::array();
  for (const CostRow& r : rows)
    arr.push_back({{"phase", r.phase},
                   {"layer", r.gemm.layer},
                   {"gemm", r.gemm.name},
                   {"module", r.gemm.module},
                   {"m", r.shape.m},
                   {"n", r.shape.n},
                   {"k", r.shape.k},
                   {"wfmt", format_name(r.wfmt)},
                   {"afmt", format_name(r.afmt)},
                   {"cycles", r.cost.cycles},
                   {"seconds", r.cost.seconds},
                   {"dram_bytes", r.cost.dram_bytes},
                   {"sram_bytes", r.cost.sram_bytes},
                   {"macs", r.cost.macs},
                   {"energy_pj", r.cost.energy_pj},
                   {"utilization", r.cost.utilization}});
  return j.dump(1);
}

void write_file_atomic(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw std::runtime_error(path + ": cannot write (" + tmp + ")");
    out << text;
    out.flush();
    if (!out) throw std::runtime_error(path + ": write failed");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw std::runtime_error(path + ": cannot rename " + tmp + " into place");
  }
}

}  // namespace dmx::sim
