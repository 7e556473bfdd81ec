"""Instances are numbered in order of arrival (`instance.id`) and their locations keyed by that number,
not by the SOP Instance UID: UIDs are random, so each instance of an IAN put its location in a random
page of the primary key, one page written per instance at every commit (on SQLite about half of a
100-instance IAN's cost). Keyed by a number that grows, an IAN's locations share the key's last page.
The SOP Instance UID stays unique on `instance`, where the readers join.

Existing rows keep their order: on SQLite each instance takes its rowid (its order of insertion), on
PostgreSQL the order in which the new column is filled.

SQLite cannot change a primary key in place: the two tables are rebuilt by SQLite's own procedure
(https://sqlite.org/lang_altertable.html#otheralter), which alembic/env.py runs with foreign keys
off and checks afterwards. Rebuilding `instance` drops migration 0016's trigger: it is made again.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-07
"""
from alembic import op


revision = '0020'
down_revision = '0019'
branch_labels = None
depends_on = None

# Migration 0016's trigger, as it made it on SQLite.
SQLITE_TRIGGER = """
CREATE TRIGGER instance_left_study AFTER UPDATE OF study_instance_uid ON instance
FOR EACH ROW WHEN old.study_instance_uid <> new.study_instance_uid
BEGIN
  UPDATE readiness_study SET pass_id = 'moved' WHERE study_instance_uid = old.study_instance_uid;
END
"""

INSTANCE_COLUMNS = ("sop_instance_uid, sop_class_uid, series_instance_uid, study_instance_uid, first_notified_at, "
                    "last_notified_at, last_notification_id")
LOCATION_COLUMNS = ("retrieve_ae_title, availability, retrieve_url, retrieve_uri, retrieve_location_uid, file_set_id, "
                    "file_set_uid, notified_at, notification_id")


def _sqlite_instance(key: str) -> str:
    """`instance`'s DDL: keyed by `id` (upgrade) or by its SOP Instance UID (downgrade)."""
    keys = ("id INTEGER NOT NULL, " if key == "id" else "")
    constraints = ("PRIMARY KEY (id), UNIQUE (sop_instance_uid)" if key == "id" else "PRIMARY KEY (sop_instance_uid)")
    return f"""CREATE TABLE new_instance (
        {keys}sop_instance_uid VARCHAR(64) NOT NULL,
        sop_class_uid VARCHAR(64) NOT NULL,
        series_instance_uid VARCHAR(64) NOT NULL,
        study_instance_uid VARCHAR(64) NOT NULL,
        first_notified_at DATETIME NOT NULL,
        last_notified_at DATETIME NOT NULL,
        last_notification_id INTEGER NOT NULL,
        {constraints},
        FOREIGN KEY(last_notification_id) REFERENCES notification (id))"""


def _sqlite_location(key: str) -> str:
    column, reference = (("instance_id INTEGER", "instance (id)") if key == "id"
                         else ("sop_instance_uid VARCHAR(64)", "instance (sop_instance_uid)"))
    name = column.split()[0]
    return f"""CREATE TABLE new_instance_location (
        {column} NOT NULL,
        retrieve_ae_title VARCHAR(16) NOT NULL,
        availability VARCHAR(16) NOT NULL,
        retrieve_url TEXT,
        retrieve_uri TEXT,
        retrieve_location_uid VARCHAR(64),
        file_set_id VARCHAR(16),
        file_set_uid VARCHAR(64),
        notified_at DATETIME NOT NULL,
        notification_id INTEGER NOT NULL,
        PRIMARY KEY ({name}, retrieve_ae_title),
        FOREIGN KEY(notification_id) REFERENCES notification (id),
        FOREIGN KEY({name}) REFERENCES {reference})"""


def _sqlite_rebuild(key: str) -> None:
    op.execute(_sqlite_instance(key))
    op.execute(_sqlite_location(key))
    if key == "id":
        op.execute(f"INSERT INTO new_instance (id, {INSTANCE_COLUMNS}) SELECT rowid, {INSTANCE_COLUMNS} "
                   "FROM instance ORDER BY rowid")
        op.execute(f"INSERT INTO new_instance_location (instance_id, {LOCATION_COLUMNS}) "
                   f"SELECT i.rowid, {', '.join('l.' + c for c in LOCATION_COLUMNS.split(', '))} "
                   "FROM instance_location l JOIN instance i ON i.sop_instance_uid = l.sop_instance_uid")
    else:
        op.execute(f"INSERT INTO new_instance ({INSTANCE_COLUMNS}) SELECT {INSTANCE_COLUMNS} FROM instance "
                   "ORDER BY id")
        op.execute(f"INSERT INTO new_instance_location (sop_instance_uid, {LOCATION_COLUMNS}) "
                   f"SELECT i.sop_instance_uid, {', '.join('l.' + c for c in LOCATION_COLUMNS.split(', '))} "
                   "FROM instance_location l JOIN instance i ON i.id = l.instance_id")
    op.execute("DROP TABLE instance_location")
    op.execute("DROP TABLE instance")
    op.execute("ALTER TABLE new_instance RENAME TO instance")
    op.execute("ALTER TABLE new_instance_location RENAME TO instance_location")
    op.execute("CREATE INDEX ix_instance_study_series ON instance (study_instance_uid, series_instance_uid)")
    op.execute("CREATE INDEX ix_instance_last_notification_id ON instance (last_notification_id)")
    op.execute("CREATE INDEX ix_instance_location_notification_id ON instance_location (notification_id)")
    op.execute(SQLITE_TRIGGER)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        _sqlite_rebuild("id")
        return
    # The keys on the SOP Instance UID go, and with them the foreign keys that use them.
    op.execute("ALTER TABLE instance_location DROP CONSTRAINT instance_location_sop_instance_uid_fkey")
    op.execute("ALTER TABLE instance_performed_step DROP CONSTRAINT instance_performed_step_sop_instance_uid_fkey")
    op.execute("ALTER TABLE instance_location DROP CONSTRAINT instance_location_pkey")
    op.execute("ALTER TABLE instance DROP CONSTRAINT instance_pkey")
    # Numbered in the order of the table (as they arrived, unless rows were updated since).
    op.execute("ALTER TABLE instance ADD COLUMN id SERIAL NOT NULL")
    op.execute("ALTER TABLE instance ADD CONSTRAINT instance_pkey PRIMARY KEY (id)")
    op.execute("ALTER TABLE instance ADD CONSTRAINT instance_sop_instance_uid_key UNIQUE (sop_instance_uid)")
    op.execute("ALTER TABLE instance_performed_step ADD CONSTRAINT instance_performed_step_sop_instance_uid_fkey "
               "FOREIGN KEY (sop_instance_uid) REFERENCES instance (sop_instance_uid)")
    op.execute("ALTER TABLE instance_location ADD COLUMN instance_id INTEGER")
    op.execute("UPDATE instance_location l SET instance_id = i.id FROM instance i "
               "WHERE i.sop_instance_uid = l.sop_instance_uid")
    op.execute("ALTER TABLE instance_location ALTER COLUMN instance_id SET NOT NULL")
    op.execute("ALTER TABLE instance_location DROP COLUMN sop_instance_uid")
    op.execute("ALTER TABLE instance_location ADD CONSTRAINT instance_location_pkey "
               "PRIMARY KEY (instance_id, retrieve_ae_title)")
    op.execute("ALTER TABLE instance_location ADD CONSTRAINT instance_location_instance_id_fkey "
               "FOREIGN KEY (instance_id) REFERENCES instance (id)")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        _sqlite_rebuild("uid")
        return
    op.execute("ALTER TABLE instance_location DROP CONSTRAINT instance_location_instance_id_fkey")
    op.execute("ALTER TABLE instance_location DROP CONSTRAINT instance_location_pkey")
    op.execute('ALTER TABLE instance_location ADD COLUMN sop_instance_uid VARCHAR(64) COLLATE "C"')
    op.execute("UPDATE instance_location l SET sop_instance_uid = i.sop_instance_uid FROM instance i "
               "WHERE i.id = l.instance_id")
    op.execute("ALTER TABLE instance_location ALTER COLUMN sop_instance_uid SET NOT NULL")
    op.execute("ALTER TABLE instance_location DROP COLUMN instance_id")
    op.execute("ALTER TABLE instance_performed_step DROP CONSTRAINT instance_performed_step_sop_instance_uid_fkey")
    op.execute("ALTER TABLE instance DROP CONSTRAINT instance_sop_instance_uid_key")
    op.execute("ALTER TABLE instance DROP CONSTRAINT instance_pkey")
    op.execute("ALTER TABLE instance DROP COLUMN id")
    op.execute("ALTER TABLE instance ADD CONSTRAINT instance_pkey PRIMARY KEY (sop_instance_uid)")
    op.execute("ALTER TABLE instance_performed_step ADD CONSTRAINT instance_performed_step_sop_instance_uid_fkey "
               "FOREIGN KEY (sop_instance_uid) REFERENCES instance (sop_instance_uid)")
    op.execute("ALTER TABLE instance_location ADD CONSTRAINT instance_location_pkey "
               "PRIMARY KEY (sop_instance_uid, retrieve_ae_title)")
    op.execute("ALTER TABLE instance_location ADD CONSTRAINT instance_location_sop_instance_uid_fkey "
               "FOREIGN KEY (sop_instance_uid) REFERENCES instance (sop_instance_uid)")
