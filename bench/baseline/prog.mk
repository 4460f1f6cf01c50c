PROGRAMS += bench-baseline-202
bench-baseline-202_DIR := bench/baseline
