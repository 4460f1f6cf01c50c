PROGRAMS += bench-baseline-202
bench-baseline-202_DIR := bench/baseline
# The bare libmicrohttpd server is the yardstick of the publisher bench: the product itself no
# longer links libmicrohttpd (lib/http has its own HTTP/1.1 layer).
bench-baseline-202_LIBS := $(shell pkg-config --libs libmicrohttpd 2>/dev/null)
