"""The instances and locations one IAN names, as upserts: row by row (an executemany) on SQLite, and
on PostgreSQL one statement for all of them, each table's rows an `unnest` of arrays. A location is
keyed by its instance's number (`instance.id`), which it takes from the instance's row as it is
written: by the UID on SQLite, from the instances' upsert (RETURNING) on PostgreSQL.

Why one statement on PostgreSQL: an executemany is one execution per row on the server and, with the
two tables, two round trips; the arrays are one execution and one round trip whatever the IAN's size.
The merge rules are the same text in both (`instance_conflict`, `location_conflict`); the rows are
deduplicated first, the last for a key winning, as the row-by-row upserts leave them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, Integer, String, bindparam, case, func, select, true
from sqlalchemy.dialects import postgresql, sqlite

from workflow.ian.rules.notification import Notification
from workflow.ian.tables import Instance, InstanceLocation
from workflow.ian.tables import Notification as NotificationRow
from workflow.store.bulk import array_names, bind_processor, positional_sql, unnest

INSTANCE = Instance.__table__
LOCATION = InstanceLocation.__table__
INSTANCE_COLUMNS = ("sop_instance_uid", "sop_class_uid", "series_instance_uid")
# A location's values as the IAN gives them; its instance is named by UID, and stored by number.
LOCATION_COLUMNS = ("retrieve_ae_title", "availability", "retrieve_url", "retrieve_uri", "retrieve_location_uid",
                    "file_set_id", "file_set_uid")
PLACE_COLUMNS = ("sop_instance_uid", *LOCATION_COLUMNS)  # PostgreSQL: the arrays a location is read from
KEEP_EARLIER = ("retrieve_url", "retrieve_uri", "retrieve_location_uid", "file_set_id", "file_set_uid")


def instance_conflict(stmt):
    """The most recently received IAN names the instance's class, series and study."""
    newer = stmt.excluded.last_notified_at >= INSTANCE.c.last_notified_at
    return stmt.on_conflict_do_update(
        index_elements=[INSTANCE.c.sop_instance_uid],
        set_={name: case((newer, stmt.excluded[name]), else_=INSTANCE.c[name])
              for name in ("sop_class_uid", "series_instance_uid", "study_instance_uid", "last_notification_id",
                           "last_notified_at")},
    )


def location_conflict(stmt):
    """The most recently received IAN wins, whatever order concurrent transactions commit in; an
    optional attribute a later IAN leaves out keeps its earlier value for this location."""
    set_ = {name: stmt.excluded[name] for name in ("availability", "notified_at", "notification_id")}
    set_.update({name: func.coalesce(stmt.excluded[name], LOCATION.c[name]) for name in KEEP_EARLIER})
    return stmt.on_conflict_do_update(
        index_elements=[LOCATION.c.instance_id, LOCATION.c.retrieve_ae_title],
        set_=set_,
        where=stmt.excluded.notified_at >= LOCATION.c.notified_at,
    )


def rows_by_key(ian: Notification) -> tuple[dict[str, Any], dict[tuple[str, str], Any]]:
    """The IAN's instances by SOP Instance UID and its locations by (UID, Retrieve AE Title): within
    one IAN the last item for a key wins (a sender listing an instance or a title twice)."""
    by_uid = {ref.sop_instance_uid: ref for ref in ian.instances}
    locations = {(uid, title): ref for uid, ref in by_uid.items() for title in ref.retrieve_ae_titles}
    return by_uid, locations


def _location_values(ref, title: str) -> tuple:
    return (title, ref.availability.value, ref.retrieve_url, ref.retrieve_uri, ref.retrieve_location_uid,
            ref.file_set_id, ref.file_set_uid)


class RowUpserts:
    """SQLite: one upsert a row, instances then locations, each an executemany of positional tuples.

    The statements are compiled once and run with `exec_driver_sql`: SQLAlchemy's compiled execution
    processes every parameter of every row (a dict per row, its bind processors): about half of storing
    a 100-instance IAN before its commit. Here the only values that need processing, the times, are the
    same for every row of an IAN and are processed once."""

    alone = False  # an IAN is a transaction of its statements (SQLite has no one-statement form of it)

    def __init__(self, dialect) -> None:
        self._instances = positional_sql(instance_conflict(sqlite.insert(INSTANCE).values(
            {name: bindparam(name, type_=INSTANCE.c[name].type) for name in INSTANCE_ROW})), dialect, INSTANCE_ROW, TIMES)
        # Each location's instance number read from the row just written, by its UID (an index lookup
        # on a page the instance's upsert has just read).
        self._locations = positional_sql(location_conflict(sqlite.insert(LOCATION).from_select(
            [*LOCATION_COLUMNS, "notified_at", "notification_id", "instance_id"],
            select(*(bindparam(name, type_=LOCATION.c[name].type)
                     for name in (*LOCATION_COLUMNS, "notified_at", "notification_id")), INSTANCE.c.id)
            .where(INSTANCE.c.sop_instance_uid == bindparam("sop_instance_uid")))), dialect, LOCATION_ROW, TIMES)
        self._at = bind_processor(INSTANCE.c.last_notified_at, dialect) or (lambda value: value)
        self._at_location = bind_processor(LOCATION.c.notified_at, dialect) or (lambda value: value)
        notes = NotificationRow.__table__  # a UID stored already conflicts and returns no id
        self._note = sqlite.insert(notes).on_conflict_do_nothing(
            index_elements=[notes.c.sop_instance_uid]).returning(notes.c.id)

    def store_new(self, conn, note: dict[str, Any], ian: Notification, at: datetime) -> int | None:
        """Insert the notification row (`note`: its columns), then the IAN's rows; its id, or None when
        its SOP Instance UID is stored already (then nothing was written)."""
        notification_id = conn.execute(self._note, note).scalar_one_or_none()
        if notification_id is not None and ian.instances:
            self.store(conn, ian, at, notification_id)
        return notification_id

    def store(self, conn, ian: Notification, at: datetime, notification_id: int) -> None:
        when, study = self._at(at), ian.study_instance_uid
        by_uid = {ref.sop_instance_uid: ref for ref in ian.instances}  # the last item for an instance wins
        conn.exec_driver_sql(self._instances, [
            (uid, ref.sop_class_uid, ref.series_instance_uid, study, when, when, notification_id)
            for uid, ref in by_uid.items()])
        # Tuples written out (not built through a helper): this runs for every instance of every IAN.
        located = self._at_location(at)
        locations = [
            (title, ref.availability.value, ref.retrieve_url, ref.retrieve_uri, ref.retrieve_location_uid,
             ref.file_set_id, ref.file_set_uid, located, notification_id, uid)
            for uid, ref in by_uid.items() for title in ref.retrieve_ae_titles]  # titles: deduplicated at parse
        if locations:
            conn.exec_driver_sql(self._locations, locations)


# The order of the tuples `RowUpserts.store` builds; `positional_sql` holds the compiled statements to it.
INSTANCE_ROW = ("sop_instance_uid", "sop_class_uid", "series_instance_uid", "study_instance_uid", "first_notified_at",
                "last_notified_at", "last_notification_id")
LOCATION_ROW = (*LOCATION_COLUMNS, "notified_at", "notification_id", "sop_instance_uid")
TIMES = ("first_notified_at", "last_notified_at", "notified_at")  # RowUpserts processes these itself


class ArrayUpserts:
    """PostgreSQL: instances and locations in one statement (the instances' upsert a CTE of the
    locations', whose RETURNING gives each location its instance's number; the locations' foreign key is
    checked at the end of the statement).

    `store_new` also inserts the IAN's notification row in that statement, its id joined into the
    other rows: an IAN is then three round trips (BEGIN, this, the readiness mark with the COMMIT).
    When the IAN's UID is stored already (a retry, or a conflict), the notification's ON CONFLICT DO
    NOTHING returns no row, the join gives no instance or location row, and nothing changes.

    `store_alone` is that statement with the study's readiness mark in it too (`mark_from`, given by
    whoever evaluates studies, selects it from the notification's row): the whole IAN in one statement,
    run outside a transaction block (autocommit), so PostgreSQL commits it as it ends. One round trip
    instead of three, and none of a transaction's own work on our side (in process, 10-instance IANs:
    ~1.4 ms against ~2.4 ms each). The mark comes last of the statement's parts, as it came at COMMIT."""

    def __init__(self, mark_from=None) -> None:
        at, nid = bindparam("at", type_=DateTime(timezone=True)), bindparam("nid", type_=Integer)
        self._statement = self._upserts(at, nid)
        notes = NotificationRow.__table__
        note = postgresql.insert(notes).values(
            {name: bindparam(f"n_{name}", type_=notes.c[name].type) for name in NOTIFICATION_COLUMNS}
        ).on_conflict_do_nothing(index_elements=[notes.c.sop_instance_uid]).returning(notes.c.id).cte("note")
        self._with_note = select(note.c.id).add_cte(self._upserts(at, note.c.id, joined=note).cte("stored"))
        mark = mark_from(note) if mark_from is not None else None
        self._alone = self._with_note.add_cte(mark.cte("marked")) if mark is not None else None

    @property
    def alone(self) -> bool:
        """Whether `store_alone` can store an IAN (a mark to carry was given)."""
        return self._alone is not None

    def store_alone(self, conn, note: dict[str, Any], ian: Notification, at: datetime) -> int | None:
        """`store_new` with the study's mark, on `conn` in autocommit: committed when it returns. The
        IAN's id, or None when its SOP Instance UID is stored already (then nothing was written, the
        mark included)."""
        params = self._params(ian, at) | {f"n_{name}": note[name] for name in NOTIFICATION_COLUMNS}
        return conn.execute(self._alone, params).scalar_one_or_none()

    @staticmethod
    def _upserts(at, nid, joined=None):
        rows, places = unnest("i", INSTANCE_COLUMNS), unnest("l", PLACE_COLUMNS)
        # Joined to the notification row for its id: no row at all when that row was not inserted.
        rows_from = rows if joined is None else rows.join(joined, true())
        instances = instance_conflict(postgresql.insert(INSTANCE).from_select(
            [*INSTANCE_COLUMNS, "study_instance_uid", "first_notified_at", "last_notified_at", "last_notification_id"],
            select(*(rows.c[name] for name in INSTANCE_COLUMNS), bindparam("study", type_=String),
                   at, at, nid).select_from(rows_from))).returning(INSTANCE.c.id, INSTANCE.c.sop_instance_uid)
        stored = instances.cte("stored_instances")
        # Each location's instance number from the instances' upsert (every row: inserted or updated).
        places_from = places.join(stored, stored.c.sop_instance_uid == places.c.sop_instance_uid)
        if joined is not None:
            places_from = places_from.join(joined, true())
        locations = postgresql.insert(LOCATION).from_select(
            [*LOCATION_COLUMNS, "notified_at", "notification_id", "instance_id"],
            select(*(places.c[name] for name in LOCATION_COLUMNS), at, nid, stored.c.id).select_from(places_from))
        return location_conflict(locations)

    def store(self, conn, ian: Notification, at: datetime, notification_id: int) -> None:
        conn.execute(self._statement, self._params(ian, at) | {"nid": notification_id})

    def store_new(self, conn, note: dict[str, Any], ian: Notification, at: datetime) -> int | None:
        """Insert the notification row (`note`: its columns) and the IAN's rows; its id, or None when its
        SOP Instance UID is stored already (then nothing was written)."""
        params = self._params(ian, at) | {f"n_{name}": note[name] for name in NOTIFICATION_COLUMNS}
        return conn.execute(self._with_note, params).scalar_one_or_none()

    @staticmethod
    def _params(ian: Notification, at: datetime) -> dict[str, Any]:
        by_uid, locations = rows_by_key(ian)
        params: dict[str, Any] = {"study": ian.study_instance_uid, "at": at}
        refs = list(by_uid.values())
        params.update(zip(array_names("i", INSTANCE_COLUMNS),
                          (list(by_uid), [r.sop_class_uid for r in refs], [r.series_instance_uid for r in refs])))
        places = [(uid, *_location_values(ref, title)) for (uid, title), ref in locations.items()]
        params.update(zip(array_names("l", PLACE_COLUMNS),
                          (list(column) for column in zip(*places)) if places else ([] for _ in PLACE_COLUMNS)))
        return params


NOTIFICATION_COLUMNS = ("sop_instance_uid", "study_instance_uid", "calling_ae_title", "peer_address", "received_at",
                        "instance_count", "referenced_pps_uid", "content_sha256", "dataset_json")


