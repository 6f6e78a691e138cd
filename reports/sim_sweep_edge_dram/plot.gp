# dmx-sim sweep plot (regenerate: gnuplot reports/sim_sweep_edge_dram/plot.gp, from the directory the sweep ran in)
set terminal svg size 1000,720 dynamic background rgb 'white' noenhanced
set output 'reports/sim_sweep_edge_dram/sweep.svg'
set key below
set logscale y
set grid
set offsets 0.25, 0.25, 0, 0
set xlabel 'dram.gbps'
set ylabel 'seconds per phase (whole model)'
set title 'dmx-sim sweep of edge_npu.json, W x A = E4M3,E4M3 for the Linears'
set xtics ('34' 0, '68' 1, '136' 2, '272' 3)
$line0 << EOD
0 0.0234057
1 0.0126968
2 0.00957828
3 0.0087493
EOD
$line1 << EOD
0 0.00461008
1 0.00246601
2 0.00139507
3 0.000859625
EOD
$line2 << EOD
0 0.00641259
1 0.00353222
2 0.00209195
3 0.00137176
EOD
$line3 << EOD
0 0.026227
1 0.0177017
2 0.0156472
3 0.0149575
EOD
$line4 << EOD
0 0.00514942
1 0.00300535
2 0.00193442
3 0.00148591
EOD
$line5 << EOD
0 0.00732938
1 0.00444901
2 0.0030094
3 0.00239406
EOD
$line6 << EOD
0 0.0261891
1 0.0176637
2 0.0156092
3 0.0148181
EOD
$line7 << EOD
0 0.0047758
1 0.00263172
2 0.00156079
3 0.00102534
EOD
$line8 << EOD
0 0.00690338
1 0.00402301
2 0.00258275
3 0.00186256
EOD
plot $line0 using 1:2 with linespoints title 'dataflow = output_stationary, prefill batch 1', \
     $line1 using 1:2 with linespoints title 'dataflow = output_stationary, decode batch 1', \
     $line2 using 1:2 with linespoints title 'dataflow = output_stationary, decode batch 8', \
     $line3 using 1:2 with linespoints title 'dataflow = weight_stationary, prefill batch 1', \
     $line4 using 1:2 with linespoints title 'dataflow = weight_stationary, decode batch 1', \
     $line5 using 1:2 with linespoints title 'dataflow = weight_stationary, decode batch 8', \
     $line6 using 1:2 with linespoints title 'dataflow = input_stationary, prefill batch 1', \
     $line7 using 1:2 with linespoints title 'dataflow = input_stationary, decode batch 1', \
     $line8 using 1:2 with linespoints title 'dataflow = input_stationary, decode batch 8'
