PROGRAMS += history
history_DIR := services/history
