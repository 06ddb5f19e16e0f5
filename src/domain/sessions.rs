//! Shopping sessions and their events. Written only when the action carries a session id
//! (`ctx.session_id`); the simulation host never writes contract events itself.
//!
//! An action with a [`SessionEvents`] buffer in its [`Ctx`] (an in-process session that is one
//! transaction) writes the session row on its first event only and keeps later events back
//! until [`Shop::flush_session_events`]: one multi-row insert and one session update instead of
//! two statements per event, with the same rows in the end.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use serde_json::Value as Json;

use crate::ids;
use crate::store::{Codec, Stmt, StoreError};

use super::rows::placeholders;
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
}

/// A session row's last state: last_seen_at, and (status, ended_at) if an event ended it.
#[derive(Clone, Copy)]
struct Touch {
    last_seen: DateTime<Utc>,
    end: Option<(&'static str, DateTime<Utc>)>,
}

#[derive(Clone)]
struct PendingEvent {
    id: uuid::Uuid,
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

    /// Forgets everything (the transaction holding the session's writes was lost).
    pub fn reset(&self) {
        self.restore(HeldEvents::default());
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
        let Some(session_id) = ctx.session_id else {
            return Ok(());
        };
        let (status, ended_at) = match end {
            SessionEnd::Open => ("active", None),
            SessionEnd::Completed => ("completed", Some(ctx.now)),
            SessionEnd::Abandoned => ("abandoned", Some(ctx.now)),
        };
        if let Some(buffer) = &ctx.events {
            let base = buffer.0.lock().base;
            let base = match base {
                Some(base) => {
                    let mut p = buffer.0.lock();
                    // A later event that does not end the session keeps an earlier end.
                    let earlier = p.touch.and_then(|t| t.end);
                    p.touch = Some(Touch {
                        last_seen: ctx.now,
                        end: ended_at.map(|at| (status, at)).or(earlier),
                    });
                    base
                }
                None => {
                    let base = self
                        .touch_session(tx, ctx, session_id, status, ended_at)
                        .await?;
                    buffer.0.lock().base = Some(base);
                    base
                }
            };
            let mut p = buffer.0.lock();
            let seq = base + i64::try_from(p.events.len()).unwrap_or(i64::MAX) + 1;
            p.events.push(PendingEvent {
                id: ids::child_uuid(&session_id, "event", &seq.to_string()),
                user_id: ctx.user_id,
                event_type,
                payload,
                at: ctx.now,
                simulated: ctx.simulated,
            });
            return Ok(());
        }
        let seq = self
            .touch_session(tx, ctx, session_id, status, ended_at)
            .await?
            + 1;
        let codec = tx.codec();
        let event_id = ids::child_uuid(&session_id, "event", &seq.to_string());
        tx.exec(
            "INSERT INTO shopping_session_events \
               (id, session_id, user_id, event_type, payload, created_at, is_simulated) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            vec![
                codec.uuid(event_id),
                codec.uuid(session_id),
                codec.uuid(ctx.user_id),
                event_type.into(),
                codec.json(&payload),
                codec.ts(ctx.now),
                ctx.simulated.into(),
            ],
        )
        .await?;
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
                "INSERT INTO shopping_sessions \
                   (id, user_id, store_id, status, started_at, last_seen_at, ended_at, is_simulated) \
                 VALUES ($1, $2, (SELECT store_id FROM sim_user_stores WHERE user_id = $2), \
                   $3, $4, $4, $5, $6) \
                 ON CONFLICT (id) DO UPDATE SET \
                   last_seen_at = excluded.last_seen_at, \
                   status = CASE WHEN excluded.ended_at IS NULL THEN shopping_sessions.status \
                            ELSE excluded.status END, \
                   ended_at = COALESCE(excluded.ended_at, shopping_sessions.ended_at) \
                 WHERE shopping_sessions.user_id = excluded.user_id \
                 RETURNING (SELECT COUNT(*) FROM shopping_session_events e \
                            WHERE e.session_id = shopping_sessions.id) AS events",
                vec![
                    codec.uuid(session_id),
                    codec.uuid(ctx.user_id),
                    status.into(),
                    codec.ts(ctx.now),
                    codec.opt_ts(ended_at),
                    ctx.simulated.into(),
                ],
            )
            .await?;
        let Some(row) = row else {
            return Err(DomainError::Invalid {
                code: "session_user_mismatch",
                message: format!(
                    "shopping session {session_id} belongs to another user; start a new session id"
                ),
            });
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
    ) -> Result<(), StoreError> {
        let writes = self.session_event_writes(tx.codec(), session_id, buffer);
        crate::store::combine::exec_all(tx, writes).await
    }

    /// The writes of [`Shop::flush_session_events`] without running them (to share a round
    /// trip with the caller's own writes, see [`crate::store::combine`]): the held events'
    /// inserts and the session row's update. Empties the buffer: run them in the session's
    /// transaction before it commits.
    pub fn session_event_writes(
        &self,
        codec: Codec,
        session_id: uuid::Uuid,
        buffer: &SessionEvents,
    ) -> Vec<Stmt> {
        let (events, touch) = {
            let mut p = buffer.0.lock();
            let events = std::mem::take(&mut p.events);
            if let Some(base) = p.base.as_mut() {
                *base += i64::try_from(events.len()).unwrap_or(i64::MAX);
            }
            (events, p.touch.take())
        };
        let mut writes = Vec::new();
        for chunk in events.chunks(EVENT_ROWS_PER_INSERT) {
            let mut values = Vec::with_capacity(chunk.len() * 7);
            for e in chunk {
                values.extend([
                    codec.uuid(e.id),
                    codec.uuid(session_id),
                    codec.uuid(e.user_id),
                    e.event_type.into(),
                    codec.json(&e.payload),
                    codec.ts(e.at),
                    e.simulated.into(),
                ]);
            }
            writes.push(Stmt::new(
                format!(
                    "INSERT INTO shopping_session_events \
                       (id, session_id, user_id, event_type, payload, created_at, is_simulated) \
                     VALUES {}",
                    placeholders(chunk.len(), 7, 1)
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
}
