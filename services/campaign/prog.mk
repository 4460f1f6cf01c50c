PROGRAMS += campaign
campaign_DIR := services/campaign
