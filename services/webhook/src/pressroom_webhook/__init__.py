"""Pressroom webhook service: signed deliveries to Zapier, Make, Slack or any URL."""
