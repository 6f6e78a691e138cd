#!/usr/bin/env python3
"""Derives ratios (vs. measured bandwidth, vs. at::matmul) from the benchmark JSON; writes the
report JSON and a Markdown table atomically (temp file, then rename)."""
import json, os, sys

raw_path, json_out, md_out = sys.argv[1:4]
raw = json.load(open(raw_path))
ctx = raw["context"]
# With --benchmark_repetitions the run reports aggregates: keep the medians, named as without.
benches = raw["benchmarks"]
if any(b.get("run_type") == "aggregate" for b in benches):
    benches = [dict(b, name=b["run_name"]) for b in benches
               if b.get("run_type") == "aggregate" and b.get("aggregate_name") == "median"]
    repetitions = max(int(b.get("repetitions", 1)) for b in raw["benchmarks"])
else:
    repetitions = 1
# Bandwidth: the highest of the startup measurement and the Bandwidth benchmark's (the most
# conservative denominator for the ratios).
copy_bw, read_bw = float(ctx["copy_GBps"]), float(ctx["read_GBps"])
for b in raw["benchmarks"]:
    if b["name"].startswith("Bandwidth") and "copy_GB/s" in b and b.get("run_type") != "aggregate":
        copy_bw, read_bw = max(copy_bw, b["copy_GB/s"]), max(read_bw, b["read_GB/s"])
torch = {}
for b in benches:
    if b["name"].startswith("TorchMatmulFP32/"):
        m, n, k = b["name"].split("/")[1:4]
        torch[(m, n, k)] = b["real_time"]
rows = []
for b in benches:
    name = b["name"]
    kind = name.split("/")[0]
    r = {"name": name, "kind": kind, "label": b.get("label", ""), "ms": b["real_time"]}
    if kind in ("Quantize", "Dequantize"):
        r["GBps"] = b["GB/s"]; r["x_copy_bw"] = b["GB/s"] / copy_bw
    elif kind in ("Gemm", "GemvQuantized"):
        parts = name.split("/")
        if kind == "Gemm":
            m, n, k = parts[1:4]
            fw, fa = int(parts[4]), int(parts[5])
            path = int(parts[6]) if len(parts) > 6 and parts[6].isdigit() else -1
        else:
            m, (n, k) = "1", parts[1:3]
            fw, fa = int(parts[3]), int(parts[4])
            path = int(parts[5]) if len(parts) > 5 and parts[5].isdigit() else -1
        r.update(M=int(m), N=int(n), K=int(k), fw=fw, fa=fa, path=path, W_GBps=b["W_GB/s"],
                 x_read_bw=b["W_GB/s"] / read_bw, GFLOPs=b["GFLOP/s"])
        if (m, n, k) in torch:
            r["speedup_vs_torch_fp32"] = torch[(m, n, k)] / b["real_time"]
    elif kind == "TorchMatmulFP32":
        r["GFLOPs"] = b["GFLOP/s"]
    rows.append(r)
# AVX-512 vs AVX2 on the same benchmark (same run): time(avx2) / time(avx512).
by_key = {}
for r in rows:
    if "path" in r and r["path"] >= 0:
        by_key[(r["kind"], r["M"], r["N"], r["K"], r["fw"], r["fa"], r["path"])] = r["ms"]
for r in rows:
    if r.get("path") == 2:
        other = by_key.get((r["kind"], r["M"], r["N"], r["K"], r["fw"], r["fa"], 1))
        if other:
            r["x_avx2"] = other / r["ms"]
# Sorted by kernel, shape, formats, path.
order = {"Bandwidth": 0, "Quantize": 1, "Dequantize": 2, "Gemm": 3, "GemvQuantized": 4,
         "TorchMatmulFP32": 5}
def sort_key(r):
    if "M" in r:
        return (order.get(r["kind"], 9), r["M"], r["N"], r["K"], r["fw"], r["fa"], r["path"])
    parts = r["name"].split("/")
    nums = tuple(int(x) for x in parts[1:4] if x.isdigit())
    return (order.get(r["kind"], 9),) + nums
rows.sort(key=sort_key)
command = os.environ.get("DMX_BENCH_COMMAND", "")
cpu_model = os.environ.get("DMX_BENCH_CPU_MODEL", "")
cpu_flags = os.environ.get("DMX_BENCH_CPU_FLAGS", "")
commit = os.environ.get("DMX_BENCH_COMMIT", "")
out = {"command": command, "commit": commit, "cpu_model": cpu_model, "cpu_flags": cpu_flags,
       "context": ctx, "copy_GBps": copy_bw, "read_GBps": read_bw, "repetitions": repetitions,
       "results": rows}

def atomic_write(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)

atomic_write(json_out, json.dumps(out, indent=1) + "\n")
md = [f"# CPU kernels ({ctx.get('kernel_path')} path, {ctx.get('threads')} threads; "
      f"paths here: {ctx.get('paths_available')})", "",
      *([f"`{command}` at {commit}.", ""] if command else []),
      *([f"CPU: {cpu_model}; SIMD flags: {cpu_flags}.", ""] if cpu_model or cpu_flags else []),
      f"Measured in the same run (highest of the startup and Bandwidth measurements): copy "
      f"{copy_bw:.2f} GB/s, read {read_bw:.2f} GB/s."
      + (f" Times are medians of {repetitions} repetitions." if repetitions > 1 else ""), "",
      "Sorted by kernel, shape (M/N/K), weight / activation format (0 E4M3, 1 E5M2, 2 E3M2, "
      "3 E2M3, 4 E2M1, 5 INT8, 6 FP32) and path (1 avx2, 2 avx512); `what` names the kernel "
      "that ran; `x avx2` = avx2 time / avx512 time of the same benchmark in this run.", "",
      "| benchmark | what | ms | GB/s | x bandwidth | GFLOP/s | x at::matmul FP32 | x avx2 |",
      "|---|---|---|---|---|---|---|---|"]
for r in rows:
    if r["kind"] == "Bandwidth":
        continue
    gb = r.get("GBps", r.get("W_GBps"))
    xb = r.get("x_copy_bw", r.get("x_read_bw"))
    md.append("| {} | {} | {:.3f} | {} | {} | {} | {} | {} |".format(
        r["name"].replace("/real_time", "").split("/min_time")[0], r["label"], r["ms"],
        f"{gb:.2f}" if gb is not None else "", f"{xb:.2f}" if xb is not None else "",
        f"{r['GFLOPs']:.1f}" if "GFLOPs" in r else "",
        f"{r['speedup_vs_torch_fp32']:.2f}" if "speedup_vs_torch_fp32" in r else "",
        f"{r['x_avx2']:.2f}" if "x_avx2" in r else ""))
atomic_write(md_out, "\n".join(md) + "\n")
