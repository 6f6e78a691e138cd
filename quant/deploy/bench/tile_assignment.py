#!/usr/bin/env python3
"""Tiles a searched assignment over a deeper model: layer i of an L-layer model takes the formats of
layer floor(i * S / L) of the S-layer source (llama-tiny's dmx 5.5 for the Llama-3.2-1B shape).
    tile_assignment.py SOURCE_ASSIGNMENT.json TARGET_CONFIG.json OUT.json"""
import json
import sys

src = json.load(open(sys.argv[1]))
L = json.load(open(sys.argv[2]))["num_hidden_layers"]
by = {l["layer"]: l for l in src["layers"]}
S = 1 + max(int(name.split(".")[2]) for name in by)
out = []
for i in range(L):
    t = i * S // L
    for s in ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
              "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]:
        f = by[f"model.layers.{t}.{s}"]
        out.append({"layer": f"model.layers.{i}.{s}", "weight_format": f["weight_format"],
                    "act_format": f["act_format"]})
json.dump({"layers": out}, open(sys.argv[3], "w"), indent=1)
