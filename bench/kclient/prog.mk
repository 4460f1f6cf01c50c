PROGRAMS += bus-kclient
bus-kclient_DIR := bench/kclient
