// Internal: the SystemC accelerator (array of unit models, SRAM buffers, DRAM, scheduler).
#pragma once

#include <dmx/sim.h>

#include <cstdint>
#include <vector>

namespace dmx::sim::detail {

// One SRAM tile of the schedule: rows [m0, m0+mt), cols [n0, n0+nt), k blocks [kb0, kb0+kbt).
struct TileJob {
  int64_t m0 = 0, mt = 0, n0 = 0, nt = 0, kb0 = 0, kbt = 0;
  bool load_a = true;   // A tile fetched from DRAM (false: resident from the previous tile)
  bool load_b = true;   // B tile fetched from DRAM
  bool first_k = true;  // accumulation starts from -0 (else from the partial sums in SRAM C)
  bool write_c = true;  // last k tile: the C tile leaves SRAM C (to DRAM when c_dram)
  bool c_dram = true;   // C goes to DRAM (false: it stays on chip for the next operation)
};

struct JobStats {
  int64_t cycles = 0, dram_bytes = 0, sram_read = 0, sram_write = 0;
};

// Functional operands (null for timing-only jobs); c_bits holds M x N FP32 bit patterns.
struct JobData {
  const MxMatrix* a = nullptr;
  const MxMatrix* b = nullptr;
  std::vector<uint32_t>* c_bits = nullptr;
};

// Runs the tiles through the SystemC model (one process-wide SystemC context; jobs run one after
// another, each measured from its own start).
JobStats run_job(const ArchConfig& arch, MxFormat wfmt, MxFormat afmt,
                 const std::vector<TileJob>& tiles, const JobData& data = {});

// The schedule: tiles in loop order m (outer), n, k (inner).
std::vector<TileJob> make_tiles(const ArchConfig& arch, const GemmShape& s,
                                const GemmPlacement& place);

}  // namespace dmx::sim::detail
