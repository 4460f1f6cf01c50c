PROGRAMS += notify
notify_DIR := notify
