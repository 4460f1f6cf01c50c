PROGRAMS += ipcheck
ipcheck_DIR := services/ipcheck
