"""Pressroom's publishing service."""
