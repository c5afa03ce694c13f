# results.tsv -> gnuplot data: scenario, then req/s of ceiling, channelgate, node.
NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
{
  s = $col["scenario"]
  # req/s of the two-core run say little (wrk shares a core); its table row has CPU/req.
  if (s == "two-core") next
  if (!(s in seen)) { seen[s] = 1; order[++n] = s }
  rps[s, $col["server"]] = $col["rps"]
}
END {
  print "# scenario ceiling channelgate node"
  for (i = 1; i <= n; i++) {
    s = order[i]
    printf "%s %s %s %s\n", s, ((s, "ceiling") in rps) ? rps[s, "ceiling"] : 0, \
      ((s, "channelgate") in rps) ? rps[s, "channelgate"] : 0, ((s, "node") in rps) ? rps[s, "node"] : 0
  }
}
