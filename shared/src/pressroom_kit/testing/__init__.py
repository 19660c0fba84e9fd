"""Test support: throwaway real servers and fresh databases (see ``plugin``)."""
