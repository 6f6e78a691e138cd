set terminal svg size 800,520 dynamic noenhanced background rgb 'white'
set output 'reports/dmx/llama-tiny-sim-edge_npu/pareto.svg.tmp'
set datafile separator ','
set key outside right
set grid
set xlabel 'achieved cost (fraction of the MXFP4..MXFP8 range, cycles)'
set ylabel 'perplexity'
set title 'dMX Pareto: llama-tiny on edge_npu'
plot 'reports/dmx/llama-tiny-sim-edge_npu/sweep.csv' using (strcol(1) eq 'dmx' ? $9 : 1/0):4 with linespoints title 'dmx', 'reports/dmx/llama-tiny-sim-edge_npu/sweep.csv' using (strcol(1) eq 'kl' ? $9 : 1/0):4 with linespoints title 'kl', 'reports/dmx/llama-tiny-sim-edge_npu/sweep.csv' using (strcol(1) eq 'uniform' ? $9 : 1/0):4 with points pt 7 ps 1.2 title 'uniform'
