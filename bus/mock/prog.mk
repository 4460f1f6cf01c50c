PROGRAMS += bus-mock
bus-mock_DIR := bus/mock
