PROGRAMS += busctl
busctl_DIR := bus/busctl
