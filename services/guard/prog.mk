PROGRAMS += guard
guard_DIR := services/guard
