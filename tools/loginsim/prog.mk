PROGRAMS += loginsim
loginsim_DIR := tools/loginsim
