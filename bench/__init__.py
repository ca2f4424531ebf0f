"""`make bench`: what aether costs and what it saves, measured on real processes, side by side.

`python -m bench.run` (or `--quick`) runs every section and writes results.md and
results.json; see bench/README.md.
"""
