-- One non-owner role per service (row-level security applies to it); each service grants
-- its own role what it needs in its own database, and nothing elsewhere. Change the
-- passwords outside local experiments.
CREATE ROLE pressroom_gateway LOGIN PASSWORD 'pressroom_gateway' NOSUPERUSER NOBYPASSRLS;
CREATE ROLE pressroom_media LOGIN PASSWORD 'pressroom_media' NOSUPERUSER NOBYPASSRLS;
CREATE ROLE pressroom_publishing LOGIN PASSWORD 'pressroom_publishing' NOSUPERUSER NOBYPASSRLS;
CREATE ROLE pressroom_analytics LOGIN PASSWORD 'pressroom_analytics' NOSUPERUSER NOBYPASSRLS;
CREATE ROLE pressroom_approval LOGIN PASSWORD 'pressroom_approval' NOSUPERUSER NOBYPASSRLS;
CREATE ROLE pressroom_webhook LOGIN PASSWORD 'pressroom_webhook' NOSUPERUSER NOBYPASSRLS;

-- One database per service (ARCHITECTURE.md §2), created when the volume is new.
CREATE DATABASE pressroom_gateway;
CREATE DATABASE pressroom_media;
CREATE DATABASE pressroom_publishing;
CREATE DATABASE pressroom_analytics;
CREATE DATABASE pressroom_approval;
CREATE DATABASE pressroom_webhook;
