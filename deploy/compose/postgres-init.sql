-- One database per service (ARCHITECTURE.md §2), created when the volume is new.
CREATE DATABASE pressroom_gateway;
CREATE DATABASE pressroom_media;
CREATE DATABASE pressroom_publishing;
CREATE DATABASE pressroom_analytics;
CREATE DATABASE pressroom_approval;
CREATE DATABASE pressroom_webhook;
