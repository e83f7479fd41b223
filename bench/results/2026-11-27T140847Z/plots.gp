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

set xlabel 'users (5 rps each)'
set output 'seed-latency.png'
set title 'seed: latency vs users (p75 solid, p99 dashed)'
set ylabel 'latency (ms)'
set yrange [0:*]
plot 'seed-bare.dat' using 1:3 with linespoints linecolor 1 dashtype 1 pointtype 5 title 'bare (no mesh) p75', \
     'seed-bare.dat' using 1:5 with linespoints linecolor 1 dashtype 2 pointtype 7 title 'bare (no mesh) p99', \
     'seed-ebpf.dat' using 1:3 with linespoints linecolor 2 dashtype 1 pointtype 5 title 'Weft, eBPF capture p75', \
     'seed-ebpf.dat' using 1:5 with linespoints linecolor 2 dashtype 2 pointtype 7 title 'Weft, eBPF capture p99', \
     'seed-iptables.dat' using 1:3 with linespoints linecolor 3 dashtype 1 pointtype 5 title 'Weft, iptables capture p75', \
     'seed-iptables.dat' using 1:5 with linespoints linecolor 3 dashtype 2 pointtype 7 title 'Weft, iptables capture p99', \
     'seed-sidecar.dat' using 1:3 with linespoints linecolor 4 dashtype 1 pointtype 5 title 'sidecar mesh (HAProxy per pod, mTLS) p75', \
     'seed-sidecar.dat' using 1:5 with linespoints linecolor 4 dashtype 2 pointtype 7 title 'sidecar mesh (HAProxy per pod, mTLS) p99'
set output 'seed-cpu.png'
set title 'seed: CPU vs users (apps + mesh)'
set ylabel 'CPU (cores)'
plot 'seed-bare.dat' using 1:6 with linespoints linecolor 1 dashtype 1 pointtype 5 title 'bare (no mesh)', \
     'seed-ebpf.dat' using 1:6 with linespoints linecolor 2 dashtype 1 pointtype 5 title 'Weft, eBPF capture', \
     'seed-iptables.dat' using 1:6 with linespoints linecolor 3 dashtype 1 pointtype 5 title 'Weft, iptables capture', \
     'seed-sidecar.dat' using 1:6 with linespoints linecolor 4 dashtype 1 pointtype 5 title 'sidecar mesh (HAProxy per pod, mTLS)'
set output 'seed-memory.png'
set title 'seed: memory vs users (apps + mesh, mean PSS)'
set ylabel 'memory (MiB)'
plot 'seed-bare.dat' using 1:7 with linespoints linecolor 1 dashtype 1 pointtype 5 title 'bare (no mesh)', \
     'seed-ebpf.dat' using 1:7 with linespoints linecolor 2 dashtype 1 pointtype 5 title 'Weft, eBPF capture', \
     'seed-iptables.dat' using 1:7 with linespoints linecolor 3 dashtype 1 pointtype 5 title 'Weft, iptables capture', \
     'seed-sidecar.dat' using 1:7 with linespoints linecolor 4 dashtype 1 pointtype 5 title 'sidecar mesh (HAProxy per pod, mTLS)'
unset output

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
     '' using 4 linecolor 3 title 'Weft, iptables capture', \
     '' using 5 linecolor 4 title 'sidecar mesh (HAProxy per pod, mTLS)'
unset output
set xtics norotate
set style data points

set output 'scale-pods.png'
set title 'scale: RSS vs pods (ztunnel solid, agent dashed)'
set xlabel 'pods'
set ylabel 'RSS (MiB)'
set yrange [0:*]
plot 'scale-pods-ebpf.dat' using 1:2 with linespoints linecolor 1 dashtype 1 pointtype 5 title 'Weft, eBPF capture ztunnel', \
     'scale-pods-ebpf.dat' using 1:3 with linespoints linecolor 1 dashtype 2 pointtype 7 title 'Weft, eBPF capture agent', \
     'scale-pods-iptables.dat' using 1:2 with linespoints linecolor 2 dashtype 1 pointtype 5 title 'Weft, iptables capture ztunnel', \
     'scale-pods-iptables.dat' using 1:3 with linespoints linecolor 2 dashtype 2 pointtype 7 title 'Weft, iptables capture agent'
unset output

set output 'scale-idle-connections.png'
set title 'scale: ztunnel RSS vs open idle tunnelled connections (both nodes)'
set xlabel 'idle connections'
set ylabel 'ztunnel RSS (MiB)'
set yrange [0:*]
plot 'scale-idle-ebpf.dat' using 1:2 with linespoints linecolor 1 dashtype 1 pointtype 5 title 'Weft, eBPF capture', \
     'scale-idle-iptables.dat' using 1:2 with linespoints linecolor 2 dashtype 1 pointtype 5 title 'Weft, iptables capture'
unset output
