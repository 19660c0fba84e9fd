-- The non-owner role services run as (row-level security applies to it); each service's
-- migrations grant it what it needs. Change the password outside local experiments.
CREATE ROLE pressroom_app LOGIN PASSWORD 'pressroom_app' NOSUPERUSER NOBYPASSRLS;

-- One database per service (ARCHITECTURE.md §2), created when the volume is new.
CREATE DATABASE pressroom_gateway;
CREATE DATABASE pressroom_media;
CREATE DATABASE pressroom_publishing;
CREATE DATABASE pressroom_analytics;
CREATE DATABASE pressroom_approval;
CREATE DATABASE pressroom_webhook;
