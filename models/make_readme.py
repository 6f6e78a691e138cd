#!/usr/bin/env python3
"""Writes models/<name>/README.md and loss.svg from what dmx-train left in the folder
(train_summary.json, loss.csv, config.json) and models/unigram.json (dmx-unigram-ppl).

Usage: models/make_readme.py NAME [NAME ...]
"""
import csv
import json
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

BLURB = {
    "llama-tiny": "LlamaForCausalLM in the Llama 3 style: untied `lm_head`, GQA (4 query heads, "
                  "2 KV heads), RoPE theta 500000 with `llama3` rope_scaling (factor 8).",
    "smollm2-tiny": "LlamaForCausalLM in the SmolLM2 style: tied input/output embeddings "
                    "(no `lm_head.weight` in the checkpoint), GQA (6 query heads, 2 KV heads).",
    "qwen3-tiny": "Qwen3ForCausalLM: per-head `q_norm`/`k_norm` RMSNorm before RoPE, explicit "
                  "`head_dim` 64 (4 heads x 64 = 256 != hidden 192), GQA (2 KV heads), tied "
                  "embeddings like Qwen3-0.6B, RoPE theta 1e6.",
}


def train_command(name):
    with open(os.path.join(HERE, "train.sh")) as fh:
        lines = fh.read().split("\n")
    start = next(i for i, l in enumerate(lines) if "dmx-train --config" in l)
    cmd = []
    for l in lines[start:]:
        cmd.append(l.strip())
        if not l.rstrip().endswith("\\"):
            break
    text = "\n    ".join(cmd)
    # The schedule: a per-model case block (NAME) or its default (*), or one plain STEPS=... line.
    import re
    sched = {}
    for l in lines:
        mm = re.match(r"\s*([\w*-]+)\) (STEPS=.*) ;;", l)
        if mm:
            sched[mm.group(1)] = dict(kv.split("=") for kv in mm.group(2).split())
        elif re.match(r"\s*STEPS=\S+( \w+=\S+)*\s*$", l):
            sched["*"] = dict(kv.split("=") for kv in l.split())
    for k, v in sched.get(name, sched.get("*", {})).items():
        text = text.replace("$" + k, v)
    text = text.replace('"$BIN"/', "build/bin/").replace("$m", name)
    return text.replace('${DMX_TRAIN_WORK:-/tmp/dmx-train}', "/tmp/dmx-train")


def plot(folder, rows):
    if not shutil.which("gnuplot"):
        return False
    data = os.path.join(folder, ".loss.dat")
    with open(data, "w") as fh:
        for r in rows:
            fh.write(f"{r['step']} {r['train_loss']} {r['val_loss'] or 'NaN'}\n")
    script = f"""
set terminal svg size 640,360 font 'sans,11'
set output '{folder}/loss.svg.tmp'
set xlabel 'step'
set ylabel 'loss (nats/token)'
set key top right
set grid
plot '{data}' using 1:2 with lines lw 1 lc rgb '#8888cc' title 'train (batch)', \\
     '{data}' using 1:3 with linespoints pt 7 ps 0.6 lc rgb '#cc3333' title 'validation (16 windows)'
"""
    subprocess.run(["gnuplot"], input=script.encode(), check=True)
    os.replace(os.path.join(folder, "loss.svg.tmp"), os.path.join(folder, "loss.svg"))
    os.remove(data)
    return True


def main(names):
    with open(os.path.join(HERE, "unigram.json")) as fh:
        uni = {os.path.basename(e["file"]).split(".")[1]: e for e in json.load(fh)["eval"]}
    for name in names:
        folder = os.path.join(HERE, name)
        with open(os.path.join(folder, "train_summary.json")) as fh:
            s = json.load(fh)
        with open(os.path.join(folder, "config.json")) as fh:
            cfg = json.load(fh)
        with open(os.path.join(folder, "loss.csv")) as fh:
            rows = list(csv.DictReader(fh))
        have_plot = plot(folder, rows)
        size = os.path.getsize(os.path.join(folder, "model.safetensors"))
        table = ["| step | lr | train loss (mean of the last 50 steps) | validation loss |",
                 "|---:|---:|---:|---:|"]
        for i in range(49, len(rows), 50):
            window = rows[i - 49:i + 1]
            mean = sum(float(r["train_loss"]) for r in window) / len(window)
            r = rows[i]
            val = f"{float(r['val_loss']):.4f}" if r["val_loss"] else ""
            table.append(f"| {r['step']} | {float(r['lr']):.2e} | {mean:.4f} | {val} |")
        v, t = s["valid"], s["test"]
        out = f"""# {name}

{BLURB.get(name, cfg['architectures'][0])}

Trained from scratch by `dmx-train` (LibTorch, CPU) on the project's corpus (`data/`: King James
Bible + Python 3.11 documentation, see data/README.md), with the project's byte-level BPE
tokenizer (`models/tokenizer.json`, 4096 tokens, trained by `dmx-bpe-train`; a copy is in this
folder). Files: `config.json`, `model.safetensors` (BF16, {size / 2**20:.2f} MiB),
`tokenizer.json`, `loss.csv` (every step), `train_summary.json`, `train_config.json` (the config
given to dmx-train).

| | |
|---|---|
| parameters | {s['parameters']:,} |
| layers / hidden / intermediate | {cfg['num_hidden_layers']} / {cfg['hidden_size']} / {cfg['intermediate_size']} |
| heads / KV heads / head_dim | {cfg['num_attention_heads']} / {cfg['num_key_value_heads']} / {cfg['head_dim']} |
| tied embeddings | {cfg['tie_word_embeddings']} |
| training | {s['steps']} steps x {s['batch']} x {s['seq']} tokens = {s['tokens_seen']:,} tokens ({s['tokens_seen'] / s['training_tokens_in_corpus']:.2f} epochs of {s['training_tokens_in_corpus']:,}) |
| training time | {s['train_seconds'] / 60:.1f} min wall, {s["threads"]} LibTorch thread; trained at the same time as another zoo model and other jobs on a 2-core machine ({s['tokens_per_second_this_run']:.0f} tokens/s; a 1-thread run alone measured 0.63 s/step on llama-tiny, about 32 min for 3000 steps) |
| final train loss | {s['final_train_loss']:.4f} |

## Perplexity (seqlen {t['seqlen']}, non-overlapping windows, BF16 weights evaluated in FP32)

| split | this model | unigram model, same tokenizer |
|---|---:|---:|
| validation (`data/wiki.valid.raw`, {v['windows']} windows) | {v['perplexity']:.2f} | {uni['valid']['perplexity']:.2f} |
| test (`data/wiki.test.raw`, {t['windows']} windows) | {t['perplexity']:.2f} | {uni['test']['perplexity']:.2f} |

The unigram model is the token frequencies of the training split, add-one smoothed
(`dmx-unigram-ppl`, over every token of the file). Reproduce (checked by ctest `quant_zoo_models`):

```
build/bin/dmx-eval --model models/{name} --data data/wiki.test.raw --seqlen {t['seqlen']} --batch 8
build/bin/dmx-eval --model models/{name} --data data/wiki.valid.raw --seqlen {v['seqlen']} --batch 8
```

## Training command

```
python3 data/make_corpus.py          # rebuilds data/wiki.train.raw
{train_command(name)}
```
(`models/train.sh build {name}` runs exactly this; AdamW betas 0.9/0.95, weight decay on
matrices only, linear warmup then cosine decay to 10% of the peak, gradient norm clipped to
1.0, seed 1, periodic checkpoints, resumable after a kill.)

## Loss curve

{"![loss](loss.svg)" if have_plot else ""}

{chr(10).join(table)}
"""
        tmp = os.path.join(folder, "README.md.tmp")
        with open(tmp, "w") as fh:
            fh.write(out)
        os.replace(tmp, os.path.join(folder, "README.md"))
        print(f"make_readme: wrote {folder}/README.md")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
