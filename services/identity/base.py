"""The declarative base every table of the identity process shares: identity's own, the
audit log's and the console sessions'. One metadata, one migration history."""

from __future__ import annotations

from sqlalchemy.orm import DeclarativeBase

from services.common.db import new_metadata


class Base(DeclarativeBase):
    metadata = new_metadata()
