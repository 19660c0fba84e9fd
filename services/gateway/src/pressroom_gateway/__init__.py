"""Pressroom gateway: the Litestar edge and the brand registry."""
