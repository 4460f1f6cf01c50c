PROGRAMS += gamesim
gamesim_DIR := tools/gamesim
