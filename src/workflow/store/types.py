"""Column types the rooms' tables share."""

from __future__ import annotations

from sqlalchemy import String

# A UI value (at most 64 characters), compared as bytes. On PostgreSQL a column takes the database's
# collation unless it names one: under a language's (en_US.UTF-8, a cluster's usual default) every UID
# in an index is compared by that language's rules, which cost IAN ingest about a fifth of its speed and
# order UIDs for reading, not by code point. "C" frees a site from its database's default (migration 0019).
UID_TYPE = String(64).with_variant(String(64, collation="C"), "postgresql")
