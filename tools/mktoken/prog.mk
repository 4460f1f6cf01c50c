PROGRAMS += mktoken
mktoken_DIR := tools/mktoken
