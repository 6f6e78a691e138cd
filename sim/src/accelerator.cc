// The SystemC accelerator: DRAM model, double-buffered SRAM, the unit array and its scheduler.
#include "accelerator.h"

#include <dmx/sim_unit.h>

#include <algorithm>
#include <cmath>
#include <deque>
#include <memory>
#include <stdexcept>
#include <systemc>

// libsystemc's main() calls sc_main; dMX drives the kernel from library calls, so this one only
// reports misuse if a program ever runs without its own main().
int sc_main(int, char**) { return 2; }

namespace dmx::sim::detail {
namespace {

using sc_core::SC_PS;
using sc_core::sc_time;

constexpr uint64_t kCyclePs = 1000;  // simulated time is in cycles: 1 cycle = 1000 ps of SC time

uint64_t ceil_cycle(uint64_t ps) { return (ps + kCyclePs - 1) / kCyclePs * kCyclePs; }

// DRAM: one channel; transfers are served in issue order at the configured bandwidth, each
// completing `latency` after its last byte leaves the channel (latency overlaps later transfers).
SC_MODULE(DramModel) {
  double bytes_per_cycle = 1;
  double latency_cycles = 0;
  uint64_t busy_until_ps = 0;
  int64_t bytes = 0;

  SC_CTOR(DramModel) {}

  void configure(const ArchConfig& a) {
    bytes_per_cycle = a.dram_gbps / a.clock_ghz;  // GB/s / (Gcycles/s)
    latency_cycles = a.dram_latency_ns * a.clock_ghz;
    busy_until_ps = 0;
    bytes = 0;
  }
  // Returns the SC time (ps) at which a transfer of n bytes issued now has completed.
  uint64_t transfer(int64_t n) {
    const uint64_t now = sc_core::sc_time_stamp().value();
    const uint64_t start = std::max(now, busy_until_ps);
    busy_until_ps = start + uint64_t(std::ceil(double(n) / bytes_per_cycle * kCyclePs));
    bytes += n;
    return busy_until_ps + uint64_t(std::llround(latency_cycles * kCyclePs));
  }
};

struct Job {
  const ArchConfig* arch = nullptr;
  MxFormat wfmt{}, afmt{};
  const std::vector<TileJob>* tiles = nullptr;
  JobData data;
  JobStats stats;
  bool pending = false, done = false;
  std::string error;
};

SC_MODULE(Accelerator) {
  DramModel dram{"dram"};
  sc_core::sc_event job_event;
  Job* job = nullptr;

  SC_CTOR(Accelerator) { SC_THREAD(scheduler); }

  // Temporal decoupling: the array's cycles run ahead locally and are handed to the SystemC
  // kernel at the next synchronisation point (any DRAM request or wait); nothing else observes
  // the array in between, so the timing is the same as waiting every cycle, and much faster.
  int64_t pending_cycles = 0;
  void sync() {
    if (pending_cycles) wait(sc_time(double(pending_cycles * kCyclePs), SC_PS));
    pending_cycles = 0;
  }
  void wait_until(uint64_t ps) {
    sync();
    ps = ceil_cycle(ps);
    const uint64_t now = sc_core::sc_time_stamp().value();
    if (ps > now) wait(sc_time(double(ps - now), SC_PS));
  }
  void tick() { ++pending_cycles; }

  void scheduler() {
    for (;;) {
      while (!job || !job->pending) wait(job_event);
      job->pending = false;
      try {
        execute(*job);
      } catch (const std::exception& e) {
        job->error = e.what();
      }
      job->done = true;
    }
  }

  // ---- per-job state ----
  const ArchConfig* A = nullptr;
  MxFormat wf{}, af{};
  int64_t bb_a = 0, bb_w = 0;  // block bytes
  int R = 0, Ce = 0, S = 0;
  const JobData* data = nullptr;
  int64_t sram_rd = 0, sram_wr = 0;
  MxDotUnitModel rep{1, false};       // timing representative (the array runs in lockstep)
  std::vector<MxDotUnitModel> units;  // functional mode: every position

  void execute(Job & j) {
    A = j.arch;
    wf = j.wfmt;
    af = j.afmt;
    bb_a = block_bytes(af);
    bb_w = block_bytes(wf);
    R = A->units;
    Ce = A->lanes * A->pair_throughput(wf, af);
    S = A->unit_stages;
    data = &j.data;
    sram_rd = sram_wr = 0;
    rep = MxDotUnitModel(S, false);
    units.clear();
    if (data->a) {
      const size_t n = size_t(R) * Ce;
      if (n > (1u << 16))
        throw std::runtime_error("functional run: array too large (> 65536 units)");
      units.assign(n, MxDotUnitModel(S, true));
    }
    dram.configure(*A);
    pending_cycles = 0;
    const uint64_t t0 = sc_core::sc_time_stamp().value();
    dram.busy_until_ps = t0;
    const auto& tiles = *j.tiles;
    const size_t nt = tiles.size();
    std::vector<uint64_t> ready(nt, t0);
    uint64_t a_ready = t0, b_ready = t0;
    auto issue_loads = [&](size_t i) {
      const TileJob& t = tiles[i];
      if (t.load_a) {
        a_ready = dram.transfer(t.mt * t.kbt * bb_a);
        sram_wr += t.mt * t.kbt * bb_a;
      }
      if (t.load_b) {
        b_ready = dram.transfer(t.nt * t.kbt * bb_w);
        sram_wr += t.nt * t.kbt * bb_w;
      }
      ready[i] = std::max(a_ready, b_ready);
    };
    uint64_t c_free[2] = {t0, t0};
    int c_slot = 0;
    if (nt) issue_loads(0);
    for (size_t i = 0; i < nt; ++i) {
      const TileJob& t = tiles[i];
      wait_until(std::max(ready[i], c_free[c_slot]));
      if (i + 1 < nt) issue_loads(i + 1);  // the other buffer half was freed by tile i-1
      if (A->dataflow == Dataflow::OUTPUT_STATIONARY)
        compute_os(t);
      else
        compute_chain(t, A->dataflow == Dataflow::INPUT_STATIONARY);
      sync();
      if (t.write_c && t.c_dram) {
        const int64_t bytes = t.mt * t.nt * 4;
        sram_rd += bytes;  // read out of SRAM C
        c_free[c_slot] = dram.transfer(bytes);
        c_slot ^= 1;
      }
    }
    wait_until(std::max(c_free[0], c_free[1]));
    j.stats.cycles = int64_t((sc_core::sc_time_stamp().value() - t0) / kCyclePs);
    j.stats.dram_bytes = dram.bytes;
    j.stats.sram_read = sram_rd;
    j.stats.sram_write = sram_wr;
  }

  // ---- functional helpers ----
  static constexpr uint32_t kNegZero = 0x80000000u;
  uint32_t& c_at(int64_t m, int64_t n) { return (*data->c_bits)[size_t(m * data->b->rows + n)]; }
  void fill_operands(UnitInputs & in, int64_t m, int64_t n, int64_t kb) const {
    const MxMatrix& a = *data->a;
    const MxMatrix& b = *data->b;
    const int64_t kblocks = a.cols / kBlockSize;
    in.fmt_a = a.format;
    in.fmt_b = b.format;
    in.scale_a = a.scales[size_t(m * kblocks + kb)];
    in.scale_b = b.scales[size_t(n * kblocks + kb)];
    std::copy_n(&a.codes[size_t(m * a.cols + kb * kBlockSize)], kBlockSize, in.codes_a.begin());
    std::copy_n(&b.codes[size_t(n * b.cols + kb * kBlockSize)], kBlockSize, in.codes_b.begin());
  }

  // Output-stationary: array position (r, c) owns output (m, n) of a wave; waves are interleaved
  // in groups of S (the accumulator register file) so dependent issues (same output, next k block,
  // acc_in = the previous acc_out) find their operand; fewer waves than S leave bubbles.
  void compute_os(const TileJob& t) {
    const int64_t wm = (t.mt + R - 1) / R, wn = (t.nt + Ce - 1) / Ce, W = wm * wn;
    if (!t.first_k) sram_rd += t.mt * t.nt * 4;  // partial sums read from SRAM C
    sram_wr += t.mt * t.nt * 4;                  // results (partial or final) written to SRAM C
    std::vector<std::vector<uint32_t>> regs;     // functional: acc register file [g][position]
    for (int64_t g0 = 0; g0 < W; g0 += S) {
      const int G = int(std::min<int64_t>(S, W - g0));
      std::vector<int64_t> done_kb(G, 0);
      std::vector<bool> avail(G, true);  // operand for the next issue of wave g available
      if (data->a) regs.assign(G, std::vector<uint32_t>(units.size(), kNegZero));
      int64_t issued = 0, finished = 0;
      const int64_t total = int64_t(G) * t.kbt;
      while (finished < total) {
        // Results on the unit outputs this cycle (bypassed to the issue stage).
        if (rep.out_valid()) {
          const int g = rep.tag_out();
          if (data->a) collect_os(t, g0 + g, g, done_kb[g], regs[g]);
          ++done_kb[g];
          ++finished;
          avail[g] = true;
        }
        bool issue = false;
        int g = 0;
        int64_t kb = 0;
        if (issued < total) {
          kb = issued / G;
          g = int(issued % G);
          issue = avail[g];
        }
        if (issue) {
          avail[g] = false;
          ++issued;
          const int64_t w = g0 + g;
          const int64_t rows = std::min<int64_t>(R, t.mt - (w / wn) * R);
          const int64_t cols = std::min<int64_t>(Ce, t.nt - (w % wn) * Ce);
          sram_rd += rows * bb_a + cols * bb_w;
          if (data->a) clock_os(t, w, g, kb, regs[g]);
        } else if (data->a) {
          clock_idle();
        }
        rep.clock_timing(issue, uint16_t(g), true);
        tick();
      }
    }
  }

  void clock_idle() {
    UnitInputs in;
    in.in_valid = false;
    for (auto& u : units) u.clock(in);
  }
  void clock_os(const TileJob& t, int64_t w, int g, int64_t kb, const std::vector<uint32_t>& reg) {
    const int64_t wn = (t.nt + Ce - 1) / Ce;
    const int64_t mb = t.m0 + (w / wn) * R, nb = t.n0 + (w % wn) * Ce;
    UnitInputs in;
    for (int r = 0; r < R; ++r)
      for (int c = 0; c < Ce; ++c) {
        const size_t p = size_t(r) * Ce + c;
        const int64_t m = mb + r, n = nb + c;
        in.in_valid = m < t.m0 + t.mt && n < t.n0 + t.nt;
        if (in.in_valid) {
          fill_operands(in, m, n, t.kb0 + kb);
          in.acc_in = kb > 0 ? reg[p] : (t.first_k ? kNegZero : c_at(m, n));
          in.tag_in = uint16_t(g);
        }
        units[p].clock(in);
      }
  }
  void collect_os(const TileJob& t, int64_t w, int g, int64_t kb_done, std::vector<uint32_t>& reg) {
    const int64_t wn = (t.nt + Ce - 1) / Ce;
    const int64_t mb = t.m0 + (w / wn) * R, nb = t.n0 + (w % wn) * Ce;
    for (int r = 0; r < R; ++r)
      for (int c = 0; c < Ce; ++c) {
        const size_t p = size_t(r) * Ce + c;
        const int64_t m = mb + r, n = nb + c;
        if (m >= t.m0 + t.mt || n >= t.n0 + t.nt) continue;
        if (!units[p].out_valid() || units[p].tag_out() != g)
          throw std::logic_error("array lost lockstep (functional vs timing model)");
        reg[p] = units[p].acc_out();
        if (kb_done + 1 == t.kbt) c_at(m, n) = reg[p];
      }
  }

  // Weight-stationary: row r of the array holds weight block kb = kg*R + r for Ce columns; rows
  // of A stream in at row 0 and flow down the chain (acc_out of row r -> acc_in of row r+1), so
  // the k order of dot_blocked is kept. Weight registers are double-buffered: loading a pass's
  // R x Ce blocks takes R cycles and overlaps the previous pass. A pass's k group g > 0 continues
  // the partial sums of group g-1, which must have left the chain.
  // Input-stationary is the mirror image: rows hold activation blocks for Ce tokens, and weight
  // rows stream down the chain (`input_stat`: columns index m, streamed items index n).
  struct Pass {
    int64_t cg, kg, ra, ca;
  };
  struct Item {
    int64_t m;  // the streamed row (WS: an A row; IS: a W row)
    size_t pass;
  };
  bool input_stat = false;
  // Output (m, n) of streamed item `item` at column `col` of the tile.
  std::pair<int64_t, int64_t> out_at(const TileJob& t, int64_t item, int64_t col) const {
    return input_stat ? std::pair{t.m0 + col, t.n0 + item} : std::pair{t.m0 + item, t.n0 + col};
  }
  void compute_chain(const TileJob& t, bool is) {
    input_stat = is;
    const int64_t cols = is ? t.mt : t.nt, nitems = is ? t.nt : t.mt;
    const int64_t bb_stream = is ? bb_w : bb_a, bb_stat = is ? bb_a : bb_w;
    const int64_t ncg = (cols + Ce - 1) / Ce, nkg = (t.kbt + R - 1) / R;
    std::vector<Pass> passes;
    for (int64_t cg = 0; cg < ncg; ++cg)
      for (int64_t kg = 0; kg < nkg; ++kg)
        passes.push_back(
            {cg, kg, std::min<int64_t>(R, t.kbt - kg * R), std::min<int64_t>(Ce, cols - cg * Ce)});
    std::vector<int64_t> ready_at(size_t(nitems), 0);  // cycle the partial of item m is available
    std::vector<Item> items(65536);  // tag (issue number mod 2^16) -> item; in flight << 2^16
    std::deque<std::pair<int64_t, Item>> chain_out;  // timing: (cycle out of the chain, item)
    int64_t cycle = 0, pass_start = R;  // the first pass waits R cycles for its stationary blocks
    size_t p = 0;
    int64_t m = 0;
    const int64_t total = int64_t(passes.size()) * nitems;
    int64_t issued = 0, finished = 0;
    while (finished < total) {
      // Chain outputs this cycle (timing: the representative's output delayed by (ra-1)*S).
      if (rep.out_valid()) {
        const Item it = items[rep.tag_out()];
        chain_out.push_back({cycle + (passes[it.pass].ra - 1) * S, it});
      }
      while (!chain_out.empty() && chain_out.front().first <= cycle) {
        const Item it = chain_out.front().second;
        chain_out.pop_front();
        // Only a partial that the next k group of the same columns continues is waited for.
        if (it.pass + 1 < passes.size() && passes[it.pass + 1].cg == passes[it.pass].cg)
          ready_at[size_t(it.m)] = cycle;
        ++finished;
      }
      bool issue = false;
      if (issued < total && cycle >= pass_start) {
        const Pass& ps = passes[p];
        issue = ps.kg == 0 || ready_at[size_t(m)] <= cycle;
        if (ps.kg > 0 && ready_at[size_t(m)] < 0) issue = false;
      }
      uint16_t tag = 0;
      if (issue) {
        const Pass& ps = passes[p];
        tag = uint16_t(issued);
        items[tag] = {m, p};
        if (p + 1 < passes.size() && passes[p + 1].cg == ps.cg)
          ready_at[size_t(m)] = -1;    // the next k group waits for this partial
        sram_rd += ps.ra * bb_stream;  // the streamed row's blocks
        sram_wr += ps.ca * 4;          // results or partials written to SRAM C
        if (ps.kg > 0 || !t.first_k) sram_rd += ps.ca * 4;  // partials read back
        if (m == 0) sram_rd += ps.ra * ps.ca * bb_stat;     // stationary registers loaded
        ++issued;
        if (++m == nitems) {
          m = 0;
          ++p;
          pass_start = std::max(cycle + 1, pass_start + R);
        }
      }
      rep.clock_timing(issue, tag, true);
      if (data->a) clock_chain(t, passes, items, issue, tag);
      tick();
      ++cycle;
    }
  }

  // Functional chain step: every row takes its input from the row above (row 0 from the
  // scheduler); the item leaving row ra-1 of its pass is a result.
  void clock_chain(const TileJob& t, const std::vector<Pass>& passes,
                   const std::vector<Item>& items, bool issue, uint16_t tag) {
    // Results leaving the chain this cycle (first: row 0 may read
    // a partial that leaves the chain in the same cycle).
    for (int r = 0; r < R; ++r)
      for (int c = 0; c < Ce; ++c) {
        const MxDotUnitModel& u = units[size_t(r) * Ce + c];
        if (!u.out_valid()) continue;
        const Item& it = items[u.tag_out()];
        const Pass& ps = passes[it.pass];
        if (r == ps.ra - 1 && c < ps.ca) {
          auto [om, on] = out_at(t, it.m, ps.cg * Ce + c);
          c_at(om, on) = u.acc_out();
        }
      }
    std::vector<UnitInputs> ins(units.size());
    for (int r = 0; r < R; ++r)
      for (int c = 0; c < Ce; ++c) {
        const size_t pidx = size_t(r) * Ce + c;
        UnitInputs& in = ins[pidx];
        in.in_valid = false;
        uint16_t itag = 0;
        uint32_t acc = kNegZero;
        if (r == 0) {
          if (!issue) continue;
          itag = tag;
          const Item& it = items[tag];
          const Pass& ps = passes[it.pass];
          if (c >= ps.ca) continue;
          auto [om, on] = out_at(t, it.m, ps.cg * Ce + c);
          acc = (ps.kg == 0 && t.first_k) ? kNegZero : c_at(om, on);
        } else {
          const MxDotUnitModel& up = units[size_t(r - 1) * Ce + c];
          if (!up.out_valid()) continue;
          itag = up.tag_out();
          const Pass& ps = passes[items[itag].pass];
          if (r >= ps.ra || c >= ps.ca) continue;  // the item left the chain at row ra-1
          acc = up.acc_out();
        }
        const Item& it = items[itag];
        const Pass& ps = passes[it.pass];
        in.in_valid = true;
        in.tag_in = itag;
        in.acc_in = acc;
        auto [om, on] = out_at(t, it.m, ps.cg * Ce + c);
        fill_operands(in, om, on, t.kb0 + ps.kg * R + r);
      }
    for (size_t i = 0; i < units.size(); ++i) units[i].clock(ins[i]);
  }
};

Accelerator& accelerator() {
  static Accelerator* acc = new Accelerator("dmx_accelerator");  // lives as long as SystemC
  return *acc;
}

}  // namespace

JobStats run_job(const ArchConfig& arch, MxFormat wfmt, MxFormat afmt,
                 const std::vector<TileJob>& tiles, const JobData& data) {
  Accelerator& acc = accelerator();
  Job j;
  j.arch = &arch;
  j.wfmt = wfmt;
  j.afmt = afmt;
  j.tiles = &tiles;
  j.data = data;
  j.pending = true;
  acc.job = &j;
  acc.job_event.notify(sc_core::SC_ZERO_TIME);
  sc_core::sc_start();  // runs until the scheduler idles (no more events)
  acc.job = nullptr;
  if (!j.done) throw std::logic_error("dmx sim: SystemC job did not finish");
  if (!j.error.empty()) throw std::runtime_error("dmx sim: " + j.error);
  return j.stats;
}

}  // namespace dmx::sim::detail
