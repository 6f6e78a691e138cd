set terminal svg size 900,560 dynamic background rgb 'white'
set output 'reports/sim_sweep_edge_dram/sweep.svg'
set datafile separator ','
set key outside right
set logscale y
set xlabel 'dram.gbps'
set ylabel 'seconds (sum over the table)'
set title 'dmx-sim sweep: edge_npu.json'
plot 'reports/sim_sweep_edge_dram/sweep.csv' using (strcol(3)eq'E4M3' && strcol(4)eq'E4M3' && strcol(5)eq'prefill' ? $2 : NaN):6 skip 1 with linespoints title 'E4M3/E4M3 prefill', \
     'reports/sim_sweep_edge_dram/sweep.csv' using (strcol(3)eq'E4M3' && strcol(4)eq'E4M3' && strcol(5)eq'decode' ? $2 : NaN):6 skip 1 with linespoints title 'E4M3/E4M3 decode', \
     'reports/sim_sweep_edge_dram/sweep.csv' using (strcol(3)eq'E2M3' && strcol(4)eq'E2M3' && strcol(5)eq'prefill' ? $2 : NaN):6 skip 1 with linespoints title 'E2M3/E2M3 prefill', \
     'reports/sim_sweep_edge_dram/sweep.csv' using (strcol(3)eq'E2M3' && strcol(4)eq'E2M3' && strcol(5)eq'decode' ? $2 : NaN):6 skip 1 with linespoints title 'E2M3/E2M3 decode', \
     'reports/sim_sweep_edge_dram/sweep.csv' using (strcol(3)eq'E2M1' && strcol(4)eq'E2M1' && strcol(5)eq'prefill' ? $2 : NaN):6 skip 1 with linespoints title 'E2M1/E2M1 prefill', \
     'reports/sim_sweep_edge_dram/sweep.csv' using (strcol(3)eq'E2M1' && strcol(4)eq'E2M1' && strcol(5)eq'decode' ? $2 : NaN):6 skip 1 with linespoints title 'E2M1/E2M1 decode'
