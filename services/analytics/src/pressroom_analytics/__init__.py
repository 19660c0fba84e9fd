"""Pressroom's analytics service: daily metrics, sync logs, goals, the advisor, plans and charts."""
