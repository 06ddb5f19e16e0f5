//! Shopping sessions and their events. Written only when the action carries a session id
//! (`ctx.session_id`); the simulation host never writes contract events itself.
//!
//! An action with a [`SessionEvents`] buffer in its [`Ctx`] (an in-process session that is one
//! transaction, or one write request to the reference server) writes the session row on its
//! first event only and keeps later events back until [`Shop::flush_session_events`] (or the
//! caller's own last statement, see [`Shop::session_event_writes`]): one multi-row insert and
//! one session update instead of two statements per event, with the same rows in the end. A
//! [`SessionEvents::deferred`] buffer (both callers use one on PostgreSQL) holds the row back
//! too: [`Shop::write_held`] writes row and events in one statement at the end.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use sea_orm::Value;
use serde_json::Value as Json;

use crate::ids;
use crate::store::combine::{exec_all, shift_placeholders, writes_then};
use crate::store::{Backend, Codec, Row, Stmt, StoreError};

use super::rows::{NOT_PADDING, pad_rows, placeholders};
use super::{Ctx, DomainError, DomainResult, Shop};

/// Events of one shopping session held back until the end of the session's transaction.
/// Cheap to clone (clones share the buffer).
#[derive(Clone, Default)]
pub struct SessionEvents(Arc<Mutex<HeldEvents>>);

/// What a [`SessionEvents`] holds; also its snapshot (restored when a failed checkout is undone).
#[derive(Clone, Default)]
pub struct HeldEvents {
    /// Events the session had when this transaction first wrote its row (`None`: not yet).
    base: Option<i64>,
    /// Events not yet inserted, in order.
    events: Vec<PendingEvent>,
    /// The session row's last state still to write (events after the one that wrote it).
    touch: Option<Touch>,
    /// The session row is written with the events, not at the first one: see
    /// [`SessionEvents::deferred`].
    deferred: bool,
}

/// A session row's last state: last_seen_at, and (status, ended_at) if an event ended it.
#[derive(Clone, Copy)]
struct Touch {
    last_seen: DateTime<Utc>,
    end: Option<(&'static str, DateTime<Utc>)>,
}

#[derive(Clone)]
struct PendingEvent {
    user_id: uuid::Uuid,
    event_type: &'static str,
    payload: Json,
    at: DateTime<Utc>,
    simulated: bool,
}

impl SessionEvents {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// The buffer's state, to restore if the writes since are rolled back.
    pub fn snapshot(&self) -> HeldEvents {
        self.0.lock().clone()
    }

    /// Puts back a state taken with [`SessionEvents::snapshot`].
    pub fn restore(&self, state: HeldEvents) {
        *self.0.lock() = state;
    }

    /// An empty buffer that also holds back the session row, on PostgreSQL: the row and the
    /// events are written by one statement at the end ([`Shop::write_held`]), which
    /// numbers the events from the row's event count itself. One round trip fewer for an
    /// action that records one event; the check that the session is the user's own then
    /// happens in that statement (it writes nothing otherwise) instead of before the work.
    /// On SQLite (no round trips) the row is written at the first event, as with
    /// [`SessionEvents::new`].
    pub fn deferred() -> Self {
        Self(Arc::new(Mutex::new(HeldEvents {
            deferred: true,
            ..HeldEvents::default()
        })))
    }

    /// Forgets everything (the transaction holding the session's writes was lost).
    pub fn reset(&self) {
        let mut held = self.0.lock();
        *held = HeldEvents {
            deferred: held.deferred,
            ..HeldEvents::default()
        };
    }

    /// True when recording an event here writes nothing now and cannot be refused: the
    /// session row is written already (and was this user's), or waits for the flush
    /// ([`SessionEvents::deferred`] on PostgreSQL, where the flush checks the user).
    pub(crate) fn records_freely(&self, backend: Backend) -> bool {
        let p = self.0.lock();
        p.base.is_some() || (p.deferred && backend == Backend::Postgres)
    }
}

impl std::fmt::Debug for SessionEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionEvents")
            .field("pending", &self.0.lock().events.len())
            .finish()
    }
}

impl PartialEq for SessionEvents {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for SessionEvents {}

/// Creates or touches a session row and returns how many events it already had (`events`);
/// no row when the session is another user's (the conditional update changes nothing).
/// Values: id, user, status, started_at, last_seen_at, ended_at, is_simulated.
const SESSION_UPSERT: &str = "INSERT INTO shopping_sessions \
       (id, user_id, store_id, status, started_at, last_seen_at, ended_at, is_simulated) \
     VALUES ($1, $2, (SELECT store_id FROM sim_user_stores WHERE user_id = $2), \
       $3, $4, $5, $6, $7) \
     ON CONFLICT (id) DO UPDATE SET \
       last_seen_at = excluded.last_seen_at, \
       status = CASE WHEN excluded.ended_at IS NULL THEN shopping_sessions.status \
                ELSE excluded.status END, \
       ended_at = COALESCE(excluded.ended_at, shopping_sessions.ended_at) \
     WHERE shopping_sessions.user_id = excluded.user_id \
     RETURNING (SELECT COUNT(*) FROM shopping_session_events e \
                WHERE e.session_id = shopping_sessions.id) AS events";

impl Ctx {
    /// True when recording this action's event writes nothing now and cannot be refused, so
    /// that an action may record it after its own writes: no session, or a buffer that
    /// [`SessionEvents::records_freely`].
    pub(crate) fn events_record_freely(&self, backend: Backend) -> bool {
        match (&self.session_id, &self.events) {
            (None, _) => true,
            (Some(_), Some(events)) => events.records_freely(backend),
            (Some(_), None) => false,
        }
    }
}

/// The refusal of a write into another user's session.
fn session_user_mismatch(session_id: uuid::Uuid) -> DomainError {
    DomainError::Invalid {
        code: "session_user_mismatch",
        message: format!(
            "shopping session {session_id} belongs to another user; start a new session id"
        ),
    }
}

/// Where a session event goes once its session has been checked (see [`Shop::event_slot`]).
pub(crate) enum EventSlot {
    /// Into the action's buffer.
    Held(SessionEvents),
    /// Into the table at once, as the session's `seq`-th event.
    Now {
        /// The session.
        session_id: uuid::Uuid,
        /// The event's number in it.
        seq: i64,
    },
}

/// Rows per multi-row event insert (7 values each; well under SQLite's variable limit).
const EVENT_ROWS_PER_INSERT: usize = 200;

/// How an event ends its session, if it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SessionEnd {
    /// The session goes on.
    Open,
    /// A checkout completed it.
    Completed,
    /// The cart was abandoned.
    Abandoned,
}

impl Shop {
    /// Records one event in the action's session (creating the session on first use) and
    /// updates the session's last_seen_at (and status/ended_at when `end` says so). Does
    /// nothing without a session id. A session owned by another user is refused before
    /// anything is written.
    pub(crate) async fn record_event(
        &self,
        tx: &crate::store::Tx,
        ctx: &Ctx,
        event_type: &'static str,
        payload: Json,
        end: SessionEnd,
    ) -> DomainResult<()> {
        match self.event_slot(tx, ctx, end).await? {
            Some(slot) => self.fill_slot(tx, ctx, slot, event_type, payload).await,
            None => Ok(()),
        }
    }

    /// The first half of [`Shop::record_event`], for an action whose event describes writes
    /// it has yet to make: checks the session (writing its row where that happens at the
    /// first event), so that the event, recorded afterwards with [`Shop::fill_slot`], can no
    /// longer be refused. `None` without a session id.
    pub(crate) async fn event_slot(
        &self,
        tx: &crate::store::Tx,
        ctx: &Ctx,
        end: SessionEnd,
    ) -> DomainResult<Option<EventSlot>> {
        let Some(session_id) = ctx.session_id else {
            return Ok(None);
        };
        let (status, ended_at) = match end {
            SessionEnd::Open => ("active", None),
            SessionEnd::Completed => ("completed", Some(ctx.now)),
            SessionEnd::Abandoned => ("abandoned", Some(ctx.now)),
        };
        let Some(buffer) = &ctx.events else {
            let seq = self
                .touch_session(tx, ctx, session_id, status, ended_at)
                .await?
                + 1;
            return Ok(Some(EventSlot::Now { session_id, seq }));
        };
        let write_row_now = {
            let p = buffer.0.lock();
            p.base.is_none() && !(p.deferred && tx.backend() == Backend::Postgres)
        };
        if write_row_now {
            let base = self
                .touch_session(tx, ctx, session_id, status, ended_at)
                .await?;
            buffer.0.lock().base = Some(base);
        } else {
            let mut p = buffer.0.lock();
            // A later event that does not end the session keeps an earlier end.
            let earlier = p.touch.and_then(|t| t.end);
            p.touch = Some(Touch {
                last_seen: ctx.now,
                end: ended_at.map(|at| (status, at)).or(earlier),
            });
        }
        Ok(Some(EventSlot::Held(buffer.clone())))
    }

    /// Records the event of a slot from [`Shop::event_slot`] (taken in this action).
    pub(crate) async fn fill_slot(
        &self,
        tx: &crate::store::Tx,
        ctx: &Ctx,
        slot: EventSlot,
        event_type: &'static str,
        payload: Json,
    ) -> DomainResult<()> {
        let event = PendingEvent {
            user_id: ctx.user_id,
            event_type,
            payload,
            at: ctx.now,
            simulated: ctx.simulated,
        };
        match slot {
            EventSlot::Held(buffer) => buffer.0.lock().events.push(event),
            EventSlot::Now { session_id, seq } => {
                let values = event_values(tx.codec(), session_id, seq, &event).to_vec();
                tx.exec(
                    "INSERT INTO shopping_session_events \
                       (id, session_id, user_id, event_type, payload, created_at, is_simulated) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    values,
                )
                .await?;
            }
        }
        Ok(())
    }

    /// Creates or touches the session row (refusing another user's session) and returns how
    /// many events it already has.
    async fn touch_session(
        &self,
        tx: &crate::store::Tx,
        ctx: &Ctx,
        session_id: uuid::Uuid,
        status: &str,
        ended_at: Option<DateTime<Utc>>,
    ) -> DomainResult<i64> {
        let codec = tx.codec();
        // One statement creates or touches the session, refuses another user's session (the
        // conditional update returns no row) and counts the events already recorded (their
        // count gives this event's sequence number and so its deterministic id).
        let row = tx
            .query_opt(
                SESSION_UPSERT,
                vec![
                    codec.uuid(session_id),
                    codec.uuid(ctx.user_id),
                    status.into(),
                    codec.ts(ctx.now),
                    codec.ts(ctx.now),
                    codec.opt_ts(ended_at),
                    ctx.simulated.into(),
                ],
            )
            .await?;
        let Some(row) = row else {
            return Err(session_user_mismatch(session_id));
        };
        Ok(row.i64("events")?)
    }

    /// Writes the events held in `buffer` (one multi-row insert) and the session row's last
    /// state, and empties the buffer. Call in the session's transaction before it commits.
    pub async fn flush_session_events(
        &self,
        tx: &crate::store::Tx,
        session_id: uuid::Uuid,
        buffer: &SessionEvents,
    ) -> DomainResult<()> {
        match self
            .write_held(tx, session_id, buffer, 0, Vec::new())
            .await?
        {
            HeldOutcome::Written { .. } => Ok(()),
            HeldOutcome::OtherUsersSession => Err(session_user_mismatch(session_id)),
        }
    }

    /// The writes of [`Shop::flush_session_events`] without running them (to share a round
    /// trip with the caller's own writes, see [`crate::store::combine`]): the held events'
    /// inserts and the session row's update. Empties the buffer: run them in the session's
    /// transaction before it commits. `None` for a [`SessionEvents::deferred`] buffer whose
    /// session row is not written yet (its events' numbers are not known: use
    /// [`Shop::write_held`]).
    pub fn session_event_writes(
        &self,
        codec: Codec,
        session_id: uuid::Uuid,
        buffer: &SessionEvents,
    ) -> Option<Vec<Stmt>> {
        let mut p = buffer.0.lock();
        let Some(base) = p.base else {
            return p.events.is_empty().then(Vec::new);
        };
        let events = std::mem::take(&mut p.events);
        p.base = Some(base + i64::try_from(events.len()).unwrap_or(i64::MAX));
        let touch = p.touch.take();
        drop(p);
        let first = base + 1;
        Some(independent_writes(codec, session_id, first, &events, touch))
    }

    /// Writes what `buffer` holds, with `also` (the caller's own writes, independent of these:
    /// see [`crate::store::combine`]) in the same round trip, and empties the buffer. For a
    /// [`SessionEvents::deferred`] buffer whose row is not written yet, one statement writes
    /// the row and the events numbered from `expected` (the events the session is expected
    /// to have already, e.g. 0 for a new one): when it has another number, the events are
    /// inserted by a second statement with the right ones; when the session is another
    /// user's, nothing of this is written ([`HeldOutcome::OtherUsersSession`]: roll back).
    pub async fn write_held(
        &self,
        tx: &crate::store::Tx,
        session_id: uuid::Uuid,
        buffer: &SessionEvents,
        expected: i64,
        also: Vec<Stmt>,
    ) -> Result<HeldOutcome, StoreError> {
        self.write_held_then(tx, session_id, buffer, expected, also, None)
            .await
            .map(|(outcome, _)| outcome)
    }

    /// [`Shop::write_held`], answering the query `then` in the same round trip (a check that
    /// must run in the same transaction, such as a shard's fence): its first row, `None` when
    /// it has none or when the session is another user's (nothing was written).
    pub async fn write_held_then(
        &self,
        tx: &crate::store::Tx,
        session_id: uuid::Uuid,
        buffer: &SessionEvents,
        expected: i64,
        also: Vec<Stmt>,
        then: Option<Stmt>,
    ) -> Result<(HeldOutcome, Option<Row>), StoreError> {
        let codec = tx.codec();
        if let Some(mut writes) = self.session_event_writes(codec, session_id, buffer) {
            let events = buffer.0.lock().base;
            writes.extend(also);
            let row = match then {
                Some(query) => writes_then(tx, writes, query).await?.into_iter().next(),
                None => {
                    exec_all(tx, writes).await?;
                    None
                }
            };
            return Ok((HeldOutcome::Written { events }, row));
        }
        let (events, touch) = {
            let mut p = buffer.0.lock();
            (std::mem::take(&mut p.events), p.touch.take())
        };
        let stmt = row_and_events(codec, session_id, &events, touch, expected, then);
        let Some(row) = writes_then(tx, also, stmt).await?.into_iter().next() else {
            return Ok((HeldOutcome::OtherUsersSession, None));
        };
        let before = row.i64("events")?;
        if before != expected {
            // The guess was wrong (a restarted server, another writer): number them again.
            exec_all(
                tx,
                independent_writes(codec, session_id, before + 1, &events, None),
            )
            .await?;
        }
        let written = i64::try_from(events.len()).unwrap_or(i64::MAX);
        Ok((
            HeldOutcome::Written {
                events: Some(before + written),
            },
            Some(row),
        ))
    }
}

/// What [`Shop::write_held`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeldOutcome {
    /// Written; the session's events now, when known (`None`: no session row written yet).
    Written {
        /// Events the session has in this transaction.
        events: Option<i64>,
    },
    /// The session belongs to another user: nothing of the held writes (nor the caller's
    /// `also`) may be kept; roll back.
    OtherUsersSession,
}

/// The inserts of `events`, numbered from `first`, and the session row's update.
fn independent_writes(
    codec: Codec,
    session_id: uuid::Uuid,
    first: i64,
    events: &[PendingEvent],
    touch: Option<Touch>,
) -> Vec<Stmt> {
    let mut writes = Vec::new();
    let mut seq = first;
    for chunk in events.chunks(EVENT_ROWS_PER_INSERT) {
        let mut values = Vec::with_capacity(chunk.len() * 7);
        for e in chunk {
            values.extend(event_values(codec, session_id, seq, e));
            seq += 1;
        }
        let rows = pad_rows(&mut values, 7, codec.backend());
        writes.push(Stmt::new(
            format!(
                "INSERT INTO shopping_session_events \
                   (id, session_id, user_id, event_type, payload, created_at, is_simulated) \
                 SELECT * FROM (VALUES {}) AS v WHERE {NOT_PADDING}",
                placeholders(rows, 7, 1)
            ),
            values,
        ));
    }
    if let Some(Touch { last_seen, end }) = touch {
        writes.push(Stmt::new(
            "UPDATE shopping_sessions SET last_seen_at = $2, \
               status = COALESCE($3, status), ended_at = COALESCE($4, ended_at) \
             WHERE id = $1",
            vec![
                codec.uuid(session_id),
                codec.ts(last_seen),
                end.map(|(status, _)| status.to_string()).into(),
                codec.opt_ts(end.map(|(_, at)| at)),
            ],
        ));
    }
    writes
}

/// An event's row: id (the session's `seq`-th event), session, user, type, payload, time, flag.
fn event_values(codec: Codec, session_id: uuid::Uuid, seq: i64, e: &PendingEvent) -> [Value; 7] {
    [
        codec.uuid(ids::child_uuid(&session_id, "event", &seq.to_string())),
        codec.uuid(session_id),
        codec.uuid(e.user_id),
        e.event_type.into(),
        codec.json(&e.payload),
        codec.ts(e.at),
        e.simulated.into(),
    ]
}

/// [`Shop::write_held`]'s one statement (PostgreSQL): the session row as the first event's
/// touch and the later ones' would leave it (created at the first event, last seen at the
/// last, ended by the last event that ends it), refused for another user as the first event's
/// touch is; then the events, numbered after `expected` earlier ones — inserted only if the
/// row has that many. Returns the row's earlier event count (no row: another user's session)
/// and the columns of `then`'s first row (NULL when it has none). `events` is not empty.
fn row_and_events(
    codec: Codec,
    session_id: uuid::Uuid,
    events: &[PendingEvent],
    touch: Option<Touch>,
    expected: i64,
    then: Option<Stmt>,
) -> Stmt {
    let first = &events[0];
    let last_seen = touch.map_or(first.at, |t| t.last_seen);
    let end = touch.and_then(|t| t.end);
    let mut values = vec![
        codec.uuid(session_id),
        codec.uuid(first.user_id),
        end.map_or("active", |(status, _)| status).into(),
        codec.ts(first.at),
        codec.ts(last_seen),
        codec.opt_ts(end.map(|(_, at)| at)),
        first.simulated.into(),
        expected.into(),
    ];
    let mut seq = expected;
    let mut rows = Vec::with_capacity(events.len() * 7);
    for e in events {
        seq += 1;
        rows.extend(event_values(codec, session_id, seq, e));
    }
    let padded = pad_rows(&mut rows, 7, codec.backend());
    values.extend(rows);
    let answer = match then {
        Some(query) => {
            let joined = format!(
                "SELECT session_row.events, then_row.* FROM session_row \
                 LEFT JOIN ({}) AS then_row ON true",
                shift_placeholders(&query.sql, values.len())
            );
            values.extend(query.values);
            joined
        }
        None => "SELECT events FROM session_row".to_string(),
    };
    Stmt::new(
        format!(
            "WITH session_row AS ({SESSION_UPSERT}), \
             held_events AS ( \
               INSERT INTO shopping_session_events \
                 (id, session_id, user_id, event_type, payload, created_at, is_simulated) \
               SELECT v.* FROM (VALUES {}) AS v \
               WHERE {NOT_PADDING} AND (SELECT events FROM session_row) = $8) \
             {answer}",
            placeholders(padded, 7, 9)
        ),
        values,
    )
}
