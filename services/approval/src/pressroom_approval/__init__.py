"""Pressroom's approval service: approvals, escalations, review links and the audit log."""
