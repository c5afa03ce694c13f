# Clustered bars of requests per second, one cluster per scenario.
# gnuplot -e "datafile='...'; outfile='....svg'; subtitle='...'" chart.gp
set terminal svg size 900,480 dynamic font "sans,12" background rgb "white"
set output outfile
set title "POST /pusher/auth, requests per second on one core\n{/*0.8 ".subtitle."}"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.9 border -1
set boxwidth 0.9
set key top right
set grid ytics
set yrange [0:*]
set ylabel "requests/s"
set format y "%.0s%c"
set xtics nomirror
plot datafile using 2:xtic(1) title "ceiling (hyper, fixed body)" linecolor rgb "#9e9e9e", \
     '' using 3 title "channelgate" linecolor rgb "#1f77b4", \
     '' using 4 title "Node + official pusher SDK" linecolor rgb "#ff7f0e"
