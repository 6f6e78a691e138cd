#!/usr/bin/env python3
"""Adds per-window NLLs to the metrics.json of sweep points made before dmx-search recorded them,
so that summarize.py can put a paired-bootstrap interval on them. For each
reports/dmx/<sweep>/runs/<point>/ without "window_nll" it reruns the point's evaluation with
dmx-eval (fake-quant backend: the point's assignment.json, its rotation included, on the sweep's
evaluation text, windows and window length), checks that the perplexity is the recorded one
within a relative 2e-4, and writes the windows' mean NLLs into metrics.json (temporary file +
rename) with the perplexity they give ("window_nll_perplexity"). Today's runtime does not
reproduce older runs bit for bit: the blocked attention and the per-window sums round
differently, and fake quantization's rounding grid turns such last-bit changes into a relative
1e-5..1e-4 in perplexity (measured: at most 1.3e-4, qwen3-tiny-bits-kd uniform E2M1; runs made
with the blocked attention reproduce within 1e-7). A larger difference is
an error and leaves the file as it was.

Usage: reports/dmx/add_window_nll.py [BUILD_DIR (default build)] [SWEEP ...]"""
import glob
import json
import os
import subprocess
import sys
import tempfile

here = os.path.dirname(os.path.abspath(__file__))
repo = os.path.dirname(os.path.dirname(here))
build = sys.argv[1] if len(sys.argv) > 1 else "build"
sweeps = sys.argv[2:] or sorted(os.path.basename(os.path.dirname(p))
                                for p in glob.glob(os.path.join(here, "*", "sweep.csv")))
dmx_eval = os.path.join(repo, build, "bin", "dmx-eval")
failures = 0
for sweep in sweeps:
    for mpath in sorted(glob.glob(os.path.join(here, sweep, "runs", "*", "metrics.json"))):
        m = json.load(open(mpath))
        if "window_nll" in m:
            continue
        run = os.path.dirname(mpath)
        st = m.get("settings", {})
        if st.get("quantize_embed") or st.get("quantize_lm_head"):
            print(f"{run}: quantized embeddings are not reproduced by dmx-eval; skipped")
            continue
        data = st.get("eval_data") or st.get("data")
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "eval.json")
            cmd = [dmx_eval, "--model", os.path.join(repo, m["model"]), "--assignment",
                   os.path.join(run, "assignment.json"), "--data", os.path.join(repo, data),
                   "--seqlen", str(st["seqlen"]), "--max-windows", str(st.get("eval_windows", 0)),
                   "--batch", "4", "--threads", "1", "--quiet", "--out", out]
            subprocess.run(cmd, check=True, cwd=repo, stdout=subprocess.DEVNULL)
            e = json.load(open(out))
        rel = abs(e["perplexity"] - m["perplexity"]) / m["perplexity"]
        if e["windows"] != m["eval_windows"] or rel > 2e-4:
            print(f"{run}: dmx-eval gives perplexity {e['perplexity']!r} on {e['windows']} windows, "
                  f"the run recorded {m['perplexity']!r} on {m['eval_windows']}: not added")
            failures += 1
            continue
        m["window_nll"] = e["window_nll"]
        m["window_nll_perplexity"] = e["perplexity"]
        tmp = mpath + ".tmp"
        with open(tmp, "w") as f:
            f.write(json.dumps(m, indent=2) + "\n")
        os.replace(tmp, mpath)
        print(f"{run}: added {len(e['window_nll'])} windows (perplexity {e['perplexity']:.6f}, "
              f"recorded {m['perplexity']:.6f})")
sys.exit(1 if failures else 0)
