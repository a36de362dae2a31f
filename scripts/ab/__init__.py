"""scripts/ab_report.py in parts: where the figures come from (sources), which answers a
report covers, one experiment in a time window (selection), how a candidate compares with
the incumbent (comparison, on the tests of experiments/stats.py and the intervals and
sample sizes of estimates), the Markdown and JSON it prints (render) and its plot (plot)."""
