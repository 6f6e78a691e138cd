// Costing a workload: one row per operation (and per format pair for the assignable ones), the
// whole-workload totals per pair, and the CSV / JSON cost-table files (schema in sim/README.md).
#include <map>
#include <set>
#include <nlohmann/json.hpp>
#include <sstream>
#include <tuple>

#include "dmx/sim.h"

namespace dmx::sim {
namespace {

// `count` identical instances run back to back: every extensive quantity scales.
GemmCost repeat(const GemmCost& c, int64_t count) {
  GemmCost r = c;
  r.cycles *= count;
  r.seconds *= double(count);
  r.dram_bytes *= count;
  r.sram_read_bytes *= count;
  r.sram_write_bytes *= count;
  r.macs *= count;
  r.energy.mac *= double(count);
  r.energy.sram_read *= double(count);
  r.energy.sram_write *= double(count);
  r.energy.dram *= double(count);
  r.energy.static_ *= double(count);
  r.energy_pj = r.energy.total();
  r.tiles *= count;
  return r;
}

// Sums; the utilization of a sum is the cycle-weighted mean of its parts'.
void add(GemmCost& into, const GemmCost& c) {
  const int64_t cycles = into.cycles + c.cycles;
  into.utilization =
      cycles ? (into.utilization * double(into.cycles) + c.utilization * double(c.cycles)) /
                   double(cycles)
             : 0;
  into.cycles = cycles;
  into.seconds += c.seconds;
  into.dram_bytes += c.dram_bytes;
  into.sram_read_bytes += c.sram_read_bytes;
  into.sram_write_bytes += c.sram_write_bytes;
  into.macs += c.macs;
  into.energy.mac += c.energy.mac;
  into.energy.sram_read += c.energy.sram_read;
  into.energy.sram_write += c.energy.sram_write;
  into.energy.dram += c.energy.dram;
  into.energy.static_ += c.energy.static_;
  into.energy_pj = into.energy.total();
  into.tiles += c.tiles;
  into.simulated_tiles += c.simulated_tiles;
}

}  // namespace

std::vector<CostRow> cost_workload(const Workload& w, const ArchConfig& arch,
                                   const TableOptions& opt, TileCache* cache) {
  TileCache local;
  TileCache* tc = cache ? cache : &local;
  auto gemm = [&](const WorkloadOp& op, MxFormat wf, MxFormat af) {
    const GemmCost c = opt.full_simulation ? simulate_gemm(arch, op.shape, wf, af, op.place)
                                           : cost_gemm(arch, op.shape, wf, af, tc, op.place);
    return repeat(c, op.count);
  };
  std::vector<CostRow> rows;
  if (opt.assignment) {
    std::set<std::string> linears;
    for (const WorkloadOp& op : w.ops)
      if (op.assignable()) {
        linears.insert(op.module);
        if (!opt.assignment->count(op.module))
          throw ConfigError("assignment: no formats for " + op.module + " of " + w.name);
      }
    for (const auto& [module, pair] : *opt.assignment)
      if (!linears.count(module))
        throw ConfigError("assignment: " + module + " is not a Linear of " + w.name);
  }
  for (const WorkloadOp& op : w.ops) {
    CostRow r;
    r.workload = w.name;
    r.phase = w.phase;
    r.op = op;
    if (!op.is_gemm()) {
      r.wfmt = r.afmt = op.wfmt;
      r.cost = cost_transfer(arch, op.read_bytes * op.count, op.write_bytes * op.count);
      rows.push_back(r);
    } else if (!op.assignable()) {
      r.wfmt = op.wfmt;
      r.afmt = op.afmt;
      r.cost = gemm(op, op.wfmt, op.afmt);
      rows.push_back(r);
    } else if (opt.assignment) {
      std::tie(r.wfmt, r.afmt) = opt.assignment->at(op.module);
      r.cost = gemm(op, r.wfmt, r.afmt);
      rows.push_back(r);
    } else {
      for (MxFormat wf : opt.weight_formats)
        for (MxFormat af : opt.act_formats) {
          r.wfmt = wf;
          r.afmt = af;
          r.cost = gemm(op, wf, af);
          rows.push_back(r);
        }
    }
  }
  return rows;
}

std::vector<CostTotal> cost_totals(const std::vector<CostRow>& rows, bool by_pair) {
  // Groups: one per (workload, phase) in order of appearance.
  using Key = std::tuple<std::string, int, int64_t, int64_t, int64_t>;
  auto key_of = [](const CostRow& r) {
    return Key{r.workload, int(r.phase.kind), r.phase.tokens, r.phase.context, r.phase.batch};
  };
  std::vector<Key> order;
  std::map<Key, std::vector<const CostRow*>> groups;
  for (const CostRow& r : rows) {
    auto k = key_of(r);
    if (!groups.count(k)) order.push_back(k);
    groups[k].push_back(&r);
  }
  std::vector<CostTotal> out;
  for (const Key& k : order) {
    const auto& g = groups[k];
    GemmCost fixed;
    std::vector<std::pair<MxFormat, MxFormat>> pairs;
    std::map<std::pair<int, int>, GemmCost> per_pair;
    for (const CostRow* r : g) {
      if (!r->op.assignable() || !by_pair) {
        add(fixed, r->cost);
        continue;
      }
      const std::pair<int, int> p{int(r->wfmt), int(r->afmt)};
      if (!per_pair.count(p)) pairs.push_back({r->wfmt, r->afmt});
      add(per_pair[p], r->cost);
    }
    auto finish = [&](CostTotal t, const GemmCost& c) {
      t.workload = g.front()->workload;
      t.phase = g.front()->phase;
      t.cost = c;
      t.tokens_per_s = c.seconds > 0 ? double(t.phase.token_count()) / c.seconds : 0;
      t.joules_per_token = c.energy_pj * 1e-12 / double(t.phase.token_count());
      out.push_back(t);
    };
    if (pairs.empty()) {
      CostTotal t;
      t.has_pair = false;
      finish(t, fixed);
    }
    for (auto [wf, af] : pairs) {
      CostTotal t;
      t.wfmt = wf;
      t.afmt = af;
      GemmCost c = per_pair[{int(wf), int(af)}];
      add(c, fixed);
      finish(t, c);
    }
  }
  return out;
}

std::string cost_table_csv(const std::vector<CostRow>& rows) {
  std::ostringstream os;
  os.precision(10);
  os << "version,workload,phase,tokens,context,batch,layer,op,kind,module,m,n,k,count,wfmt,afmt,"
        "cycles,seconds,dram_bytes,sram_read_bytes,sram_write_bytes,macs,energy_pj,mac_pj,"
        "sram_read_pj,sram_write_pj,dram_pj,static_pj,utilization,dram_gbps\n";
  for (const CostRow& r : rows) {
    const bool g = r.op.is_gemm();
    os << kCostTableVersion << ',' << r.workload << ',' << r.phase.name() << ',' << r.phase.tokens
       << ',' << r.phase.context << ',' << r.phase.batch << ',' << r.op.layer << ',' << r.op.name
       << ',' << op_kind_name(r.op.kind) << ',' << r.op.module << ',' << (g ? r.op.shape.m : 0)
       << ',' << (g ? r.op.shape.n : 0) << ',' << (g ? r.op.shape.k : 0) << ',' << r.op.count << ','
       << format_name(r.wfmt) << ',' << (g ? format_name(r.afmt) : "-") << ',' << r.cost.cycles
       << ',' << r.cost.seconds << ',' << r.cost.dram_bytes << ',' << r.cost.sram_read_bytes << ','
       << r.cost.sram_write_bytes << ',' << r.cost.macs << ',' << r.cost.energy_pj << ','
       << r.cost.energy.mac << ',' << r.cost.energy.sram_read << ',' << r.cost.energy.sram_write
       << ',' << r.cost.energy.dram << ',' << r.cost.energy.static_ << ',' << r.cost.utilization
       << ',' << r.cost.dram_gbps() << '\n';
  }
  return os.str();
}

std::string cost_totals_csv(const std::vector<CostTotal>& totals) {
  std::ostringstream os;
  os.precision(10);
  os << "version,workload,phase,tokens,context,batch,wfmt,afmt,cycles,seconds,tokens_per_s,"
        "joules_per_token,dram_bytes,sram_read_bytes,sram_write_bytes,macs,energy_pj,mac_pj,"
        "sram_read_pj,sram_write_pj,dram_pj,static_pj,dram_gbps\n";
  for (const CostTotal& t : totals)
    os << kCostTableVersion << ',' << t.workload << ',' << t.phase.name() << ',' << t.phase.tokens
       << ',' << t.phase.context << ',' << t.phase.batch << ','
       << (t.has_pair ? format_name(t.wfmt) : "-") << ','
       << (t.has_pair ? format_name(t.afmt) : "-") << ',' << t.cost.cycles << ',' << t.cost.seconds
       << ',' << t.tokens_per_s << ',' << t.joules_per_token << ',' << t.cost.dram_bytes << ','
       << t.cost.sram_read_bytes << ',' << t.cost.sram_write_bytes << ',' << t.cost.macs << ','
       << t.cost.energy_pj << ',' << t.cost.energy.mac << ',' << t.cost.energy.sram_read << ','
       << t.cost.energy.sram_write << ',' << t.cost.energy.dram << ',' << t.cost.energy.static_
       << ',' << t.cost.dram_gbps() << '\n';
  return os.str();
}

namespace {
nlohmann::json phase_json(const Phase& p) {
  return {{"phase", p.name()}, {"tokens", p.tokens}, {"context", p.context}, {"batch", p.batch}};
}
nlohmann::json cost_json(const GemmCost& c) {
  return {{"cycles", c.cycles},
          {"seconds", c.seconds},
          {"dram_bytes", c.dram_bytes},
          {"sram_read_bytes", c.sram_read_bytes},
          {"sram_write_bytes", c.sram_write_bytes},
          {"macs", c.macs},
          {"energy_pj", c.energy_pj},
          {"energy_breakdown_pj",
           {{"mac", c.energy.mac},
            {"sram_read", c.energy.sram_read},
            {"sram_write", c.energy.sram_write},
            {"dram", c.energy.dram},
            {"static", c.energy.static_}}},
          {"utilization", c.utilization},
          {"dram_gbps", c.dram_gbps()}};
}
}  // namespace

std::string cost_table_json(const std::vector<CostRow>& rows, const std::vector<CostTotal>& totals,
                            const ArchConfig& arch, const ModelShape* model) {
  nlohmann::json j;
  j["schema"] = kCostTableSchema;
  j["version"] = kCostTableVersion;
  j["arch"] = {{"name", arch.name},
               {"file", arch.origin},
               {"units", arch.units},
               {"lanes", arch.lanes},
               {"unit_stages", arch.unit_stages},
               {"clock_ghz", arch.clock_ghz},
               {"dram_gbps", arch.dram_gbps},
               {"static_mw", arch.static_mw},
               {"dataflow", dataflow_name(arch.dataflow)}};
  if (model)
    j["model"] = {{"name", model->name},
                  {"hidden_size", model->hidden_size},
                  {"intermediate_size", model->intermediate_size},
                  {"num_hidden_layers", model->num_hidden_layers},
                  {"num_attention_heads", model->num_attention_heads},
                  {"num_key_value_heads", model->num_key_value_heads},
                  {"head_dim", model->head_dim},
                  {"vocab_size", model->vocab_size},
                  {"tie_word_embeddings", model->tie_word_embeddings}};
  auto& arr = j["rows"] = nlohmann::json::array();
  for (const CostRow& r : rows) {
    nlohmann::json x = phase_json(r.phase);
    x["workload"] = r.workload;
    x["layer"] = r.op.layer;
    x["op"] = r.op.name;
    x["kind"] = op_kind_name(r.op.kind);
    x["module"] = r.op.module;
    if (r.op.is_gemm()) {
      x["m"] = r.op.shape.m;
      x["n"] = r.op.shape.n;
      x["k"] = r.op.shape.k;
      x["afmt"] = format_name(r.afmt);
    }
    x["count"] = r.op.count;
    x["wfmt"] = format_name(r.wfmt);
    x.update(cost_json(r.cost));
    arr.push_back(x);
  }
  auto& tot = j["totals"] = nlohmann::json::array();
  for (const CostTotal& t : totals) {
    nlohmann::json x = phase_json(t.phase);
    x["workload"] = t.workload;
    if (t.has_pair) {
      x["wfmt"] = format_name(t.wfmt);
      x["afmt"] = format_name(t.afmt);
    }
    x.update(cost_json(t.cost));
    x["tokens_per_s"] = t.tokens_per_s;
    x["joules_per_token"] = t.joules_per_token;
    tot.push_back(x);
  }
  return j.dump(1);
}

}  // namespace dmx::sim
