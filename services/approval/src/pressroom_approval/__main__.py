"""``python -m pressroom_approval`` runs the approval service on uvicorn."""

from __future__ import annotations

from pressroom_kit.runtime import serve

from pressroom_approval.app import create_app
from pressroom_approval.settings import ApprovalSettings


def main() -> None:
    serve("approval", ApprovalSettings(), create_app)


if __name__ == "__main__":
    main()
