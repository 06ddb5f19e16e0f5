//! Shopping sessions and their events. Written only when the action carries a session id
//! (`ctx.session_id`); the simulation host never writes contract events itself.

use serde_json::Value as Json;

use crate::ids;

use super::{Ctx, DomainError, DomainResult, Shop};

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
        event_type: &str,
        payload: Json,
        end: SessionEnd,
    ) -> DomainResult<()> {
        let Some(session_id) = ctx.session_id else {
            return Ok(());
        };
        let codec = tx.codec();
        let (status, ended_at) = match end {
            SessionEnd::Open => ("active", None),
            SessionEnd::Completed => ("completed", Some(ctx.now)),
            SessionEnd::Abandoned => ("abandoned", Some(ctx.now)),
        };
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
        let seq = row.i64("events")? + 1;
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
}
