# Weft benchmark suite plots, written by weft-bench-suite. Re-plot with:
#   cd <this directory> && gnuplot plots.gp
# pngcairo where gnuplot has cairo, else the libgd png terminal.
if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {
  set terminal pngcairo size 960,600 noenhanced font 'sans,10'
} else {
  set terminal png size 960,600 noenhanced
}
set datafile missing '?'
set key inside top left opaque box
set offsets 0, 0, graph 0.08, 0
set grid

set output 'istio-latency.png'
set title 'istio: 1024 B echo at 1000 rps, latency per mode'
set xlabel 'connections, percentile'
set ylabel 'latency (ms)'
set yrange [0:*]
set style data histogram
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set xtics rotate by -30
plot 'istio.dat' using 2:xtic(1) linecolor 1 title 'bare (no mesh)', \
     '' using 3 linecolor 2 title 'Weft, eBPF capture', \
     '' using 4 linecolor 3 title 'Weft, eBPF capture, Service declared HTTP (L7)', \
     '' using 5 linecolor 4 title 'sidecar mesh, HTTP (HAProxy mode http per pod, mTLS)'
unset output
set xtics norotate
set style data points
