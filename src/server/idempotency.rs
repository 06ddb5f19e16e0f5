//! Idempotent writes: one transaction per write request that claims the key, does the work and
//! stores the answer.
//!
//! The key row (`sim_idempotency`, state `in_flight`) is inserted first; it becomes visible
//! only when the transaction commits, together with the work and the stored answer (`done`).
//! A concurrent duplicate therefore waits on the uncommitted row: on PostgreSQL a short
//! `lock_timeout` turns that wait into 409 `idempotency_in_flight`; on SQLite writers are
//! serialised (`BEGIN IMMEDIATE`) and the duplicate simply replays once the first commits.
//! A server killed mid-request commits nothing, so no key is ever stuck at 409.

use axum::http::{HeaderValue, StatusCode, header::CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use uuid::Uuid;

use super::error::ApiError;
use super::extract::WriteMeta;
use super::faults::bump;
use super::routes::{WriteOp, perform};
use super::state::AppState;
use crate::domain::{Ctx, HeldOutcome, SessionEvents};
use crate::store::combine::exec_all;
use crate::store::{Backend, Stmt, Tx};

/// Header added to replayed answers.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

/// Runs a write request, honouring its `Idempotency-Key` if it has one.
///
/// The request's session events wait for the end of the work and go out in its last round
/// trip, with the key's stored answer. On PostgreSQL the session row waits too
/// ([`SessionEvents::deferred`]: one statement writes it and numbers the events); if that
/// statement finds the session is another user's, nothing is committed and the request runs
/// again writing the row at its first event, which refuses it before any work (as without
/// deferral). On SQLite the row is written at the first event.
pub(crate) async fn run_write(
    state: &AppState,
    ctx: &Ctx,
    meta: &WriteMeta,
    op: WriteOp,
) -> Result<Response, ApiError> {
    if ctx.session_id.is_some() {
        let deferred = Ctx {
            events: Some(SessionEvents::deferred()),
            ..ctx.clone()
        };
        if let Some(done) = write_once(state, &deferred, meta, op.clone()).await? {
            return Ok(done);
        }
    }
    let ctx = Ctx {
        events: ctx.session_id.map(|_| SessionEvents::new()),
        ..ctx.clone()
    };
    write_once(state, &ctx, meta, op)
        .await?
        .ok_or_else(ApiError::internal)
}

/// One attempt of [`run_write`]: `None` when a deferred session row turned out to be another
/// user's (rolled back, nothing kept).
async fn write_once(
    state: &AppState,
    ctx: &Ctx,
    meta: &WriteMeta,
    op: WriteOp,
) -> Result<Option<Response>, ApiError> {
    let tx = state.db.write().await?;
    let Some(key) = meta.key.as_deref() else {
        // No key: the work commits on success; any error drops (rolls back) the transaction.
        let (status, body) = perform(&state.shop, &tx, ctx, op).await?;
        let Some(committed) = write_held(state, &tx, ctx, None).await? else {
            tx.rollback().await?;
            return Ok(None);
        };
        tx.commit().await?;
        committed.remember(state);
        return Ok(Some(json_response(status, body.to_string())));
    };
    let codec = tx.codec();
    let postgres = tx.backend() == Backend::Postgres;
    // The key's claim waits at most the short lock timeout for a concurrent duplicate. On
    // PostgreSQL the claim sets that timeout itself and puts the previous one back, all in one
    // statement: `set_config(…, true)` is `SET LOCAL`; the materialised `short_wait` keeps the
    // previous value and sets the short one before the row is inserted (so it governs the wait
    // on a conflicting key); the outer select list is evaluated in order — the claim's count
    // (which runs the insert) first, then the restore — so the work waits for its own locks
    // as usual. Two round trips fewer per keyed write than `SET LOCAL` before and after.
    let mut values = vec![
        codec.uuid(ctx.user_id),
        key.into(),
        meta.hash.as_str().into(),
        codec.ts(ctx.now),
    ];
    let claim = if postgres {
        let ms = state.config.idempotency_lock_timeout.as_millis().max(1);
        values.push(format!("{ms}ms").into());
        let sql = "WITH short_wait AS MATERIALIZED ( \
                     SELECT current_setting('lock_timeout') AS previous, \
                            set_config('lock_timeout', $5, true) AS short), \
                   claim AS ( \
                     INSERT INTO sim_idempotency \
                       (user_id, idem_key, request_hash, state, created_at) \
                     SELECT $1, $2, $3, 'in_flight', $4 FROM short_wait \
                     ON CONFLICT (user_id, idem_key) DO NOTHING RETURNING 1) \
                   SELECT (SELECT COUNT(*) FROM claim) AS claimed, \
                     set_config('lock_timeout', (SELECT previous FROM short_wait), true) \
                       AS restored";
        tx.query_one(sql, values)
            .await
            .and_then(|row| row.i64("claimed"))
    } else {
        tx.exec(
            "INSERT INTO sim_idempotency (user_id, idem_key, request_hash, state, created_at) \
             VALUES ($1, $2, $3, 'in_flight', $4) ON CONFLICT (user_id, idem_key) DO NOTHING",
            values,
        )
        .await
        .map(|n| i64::try_from(n).unwrap_or(i64::MAX))
    };
    let claimed = match claim {
        Ok(n) => n == 1,
        Err(e) if e.is_lock_timeout() => return Err(in_flight(state)),
        Err(e) => return Err(e.into()),
    };
    if !claimed {
        let row = tx
            .query_one(
                "SELECT request_hash, state, status_code, response FROM sim_idempotency \
                 WHERE user_id = $1 AND idem_key = $2",
                vec![codec.uuid(ctx.user_id), key.into()],
            )
            .await?;
        tx.rollback().await?;
        if row.string("request_hash")? != meta.hash {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_mismatch",
                "this Idempotency-Key was already used for a different request; use a new key",
            ));
        }
        let (Some(code), Some(body), "done") = (
            row.opt_i64("status_code")?,
            row.opt_string("response")?,
            row.string("state")?.as_str(),
        ) else {
            return Err(in_flight(state));
        };
        let status = u16::try_from(code)
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
            .unwrap_or(StatusCode::OK);
        bump(&state.faults.counters.replays);
        let mut resp = json_response(status, body);
        resp.headers_mut()
            .insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
        return Ok(Some(resp));
    }
    // A rejection (4xx) keeps the key row and the stored answer and none of the work: the
    // domain validates before it writes and undoes a half-done checkout itself (see
    // `crate::domain`), so no savepoint is needed around the work.
    let (status, body) = match perform(&state.shop, &tx, ctx, op).await {
        Ok(done) => done,
        Err(e) if !e.status().is_server_error() => (e.status(), e.body()),
        // 5xx: nothing is kept, the key is free for a retry.
        Err(e) => return Err(e),
    };
    let body = body.to_string();
    let stored = Stmt::new(
        "UPDATE sim_idempotency SET state = 'done', status_code = $3, response = $4 \
         WHERE user_id = $1 AND idem_key = $2",
        vec![
            codec.uuid(ctx.user_id),
            key.into(),
            i64::from(status.as_u16()).into(),
            body.as_str().into(),
        ],
    );
    let Some(committed) = write_held(state, &tx, ctx, Some(stored)).await? else {
        tx.rollback().await?;
        return Ok(None);
    };
    tx.commit().await?;
    committed.remember(state);
    Ok(Some(json_response(status, body)))
}

/// Writes what `ctx` held back during the work, with `also` (the key's stored answer) in the
/// same round trip. `None`: a deferred session row is another user's and nothing was written
/// (roll back). What it returns is remembered once the caller has committed.
async fn write_held(
    state: &AppState,
    tx: &Tx,
    ctx: &Ctx,
    also: Option<Stmt>,
) -> Result<Option<Committed>, ApiError> {
    let also: Vec<Stmt> = also.into_iter().collect();
    let (Some(session), Some(events)) = (ctx.session_id, &ctx.events) else {
        exec_all(tx, also).await?;
        return Ok(Some(Committed(None)));
    };
    let expected = state.event_counts.expected(session);
    match state
        .shop
        .write_held(tx, session, events, expected, also)
        .await?
    {
        // No events: nothing learnt about the session.
        HeldOutcome::Written { events } => Ok(Some(Committed(events.map(|n| (session, n))))),
        HeldOutcome::OtherUsersSession => Ok(None),
    }
}

/// What to remember once the request's transaction has committed: a session's event count.
struct Committed(Option<(Uuid, i64)>);

impl Committed {
    fn remember(self, state: &AppState) {
        if let Some((session, events)) = self.0 {
            state.event_counts.set(session, events);
        }
    }
}

fn in_flight(state: &AppState) -> ApiError {
    bump(&state.faults.counters.conflicts_409);
    ApiError::new(
        StatusCode::CONFLICT,
        "idempotency_in_flight",
        "a request with this Idempotency-Key is still running; retry later",
    )
}

/// A JSON answer from an already serialised body.
fn json_response(status: StatusCode, body: String) -> Response {
    let mut resp = (status, body).into_response();
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}
