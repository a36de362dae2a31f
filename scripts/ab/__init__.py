"""scripts/ab_report.py in parts: where the figures come from (sources), how a candidate
compares with the incumbent (comparison, on the tests of experiments/stats.py), and the
Markdown and JSON it prints (render)."""
