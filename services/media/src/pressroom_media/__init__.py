"""Pressroom media service."""
