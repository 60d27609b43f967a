"""``qupaint serve``: a local web app on the flake database (:func:`create_app`)."""

from __future__ import annotations

from qupaint._extras import require

require("web", "qupaint.web")  # a missing extra: one line naming it

from qupaint.web.app import LOCAL_HOSTS, create_app, new_token

__all__ = ["LOCAL_HOSTS", "create_app", "new_token"]
