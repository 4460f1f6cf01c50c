PROGRAMS += bus-dispatcher
bus-dispatcher_DIR := bus/dispatcher
