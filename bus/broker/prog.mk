PROGRAMS += bus-broker
bus-broker_DIR := bus/broker
