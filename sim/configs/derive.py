#!/usr/bin/env python3
"""Regenerates the derived numbers of the shipped architecture configs from the RTL's area report.

    python3 sim/configs/derive.py           # rewrite sim/configs/*.json in place
    python3 sim/configs/derive.py --check   # exit 1 if a config differs from its derivation

Each config's "derivation" object holds the inputs; this script writes:
  energy_pj.mac[F] = mac_pj_anchor.pj * GE(F) / GE(anchor format)
      GE(F): gate equivalents of mx_dot_unit synthesized for format F alone (reports/rtl_area.csv,
      Yosys; rtl/synth/area.sh). Dynamic energy per block is taken as proportional to the switched
      logic, i.e. to the single-format unit's area; one anchor (a published per-MAC figure for one
      format) sets the scale. A mixed pair is charged the mean of its two formats (sim/README.md).
  static_mw = leakage_nw_per_ge * array GE * 1e-6 + sram_leakage_uw_per_kib * SRAM KiB * 1e-3
      array GE = units * lanes * (GE(all formats) + sum_F (throughput[F] - 1) * GE(F)): the
      multi-format unit at every array position, plus the extra single-format datapaths that a
      throughput above one block per cycle needs.
"""
import csv
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FORMATS = ["E4M3", "E5M2", "E3M2", "E2M3", "E2M1", "INT8"]


def read_area(path):
    ge = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            ge[row["configuration"]] = float(row["gate_equivalents"])
    missing = [c for c in FORMATS + ["all"] if c not in ge]
    if missing:
        sys.exit(f"{path}: no row for {', '.join(missing)}")
    return ge


def derive(cfg, name):
    d = cfg["derivation"]
    ge = read_area(ROOT / d["area_csv"])
    anchor = d["mac_pj_anchor"]
    scale = float(anchor["pj"]) / ge[anchor["format"]]
    cfg.setdefault("energy_pj", {})["mac"] = {f: round(scale * ge[f], 4) for f in FORMATS}
    tp = {f: 1 for f in FORMATS}
    tp.update(cfg.get("throughput", {}))
    position_ge = ge["all"] + sum((tp[f] - 1) * ge[f] for f in FORMATS)
    array_ge = cfg["array"]["units"] * cfg["array"]["lanes"] * position_ge
    sram_kib = sum(cfg["sram_kib"].values())
    static_mw = (float(d["leakage_nw_per_ge"]) * array_ge * 1e-6 +
                 float(d["sram_leakage_uw_per_kib"]) * sram_kib * 1e-3)
    cfg["static_mw"] = round(static_mw, 3)
    return cfg


def main():
    check = "--check" in sys.argv[1:]
    bad = 0
    for path in sorted((ROOT / "sim" / "configs").glob("*.json")):
        text = path.read_text()
        cfg = json.loads(text)
        if "derivation" not in cfg:
            continue
        want = json.dumps(derive(json.loads(text), path.name), indent=2) + "\n"
        if want == text:
            print(f"{path.relative_to(ROOT)}: up to date")
        elif check:
            print(f"{path.relative_to(ROOT)}: differs from its derivation "
                  f"(run python3 sim/configs/derive.py)")
            bad += 1
        else:
            path.write_text(want)
            print(f"{path.relative_to(ROOT)}: rewritten")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
