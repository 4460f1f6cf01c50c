PROGRAMS += bus-publisher
bus-publisher_DIR := bus/publisher
