set terminal svg size 800,520 dynamic noenhanced background rgb 'white'
set output 'reports/dmx/smollm2-tiny-bits-kd/pareto.svg.tmp'
set datafile separator ','
set key outside right
set grid
set xlabel 'achieved bits'
set ylabel 'perplexity'
set title 'dMX Pareto: smollm2-tiny (bits), 3 seeds'
plot 'reports/dmx/smollm2-tiny-bits-kd/sweep.csv' using (strcol(1) eq 'dmx-untied' ? $5 : 1/0):4 with points title 'dmx-untied', 'reports/dmx/smollm2-tiny-bits-kd/sweep.csv' using (strcol(1) eq 'dmx3' ? $5 : 1/0):4 with points title 'dmx3', 'reports/dmx/smollm2-tiny-bits-kd/sweep.csv' using (strcol(1) eq 'kl' ? $5 : 1/0):4 with points title 'kl', 'reports/dmx/smollm2-tiny-bits-kd/sweep.csv' using (strcol(1) eq 'uniform' ? $5 : 1/0):4 with points pt 7 ps 1.2 title 'uniform', 'reports/dmx/smollm2-tiny-bits-kd/sweep.csv' using (strcol(1) eq 'uniform' ? $5 : 1/0):4:2 with labels offset 0,0.8 notitle, 31.09616534 with lines dt 2 lc rgb 'black' title 'FP32'
