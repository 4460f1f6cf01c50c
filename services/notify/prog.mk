PROGRAMS += notify
notify_DIR := services/notify
