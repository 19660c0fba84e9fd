"""A tiny service built with the kit (notes that can be written and renamed).

The kit's own tests and the pipeline benchmark use it; it is no part of Pressroom.
"""
