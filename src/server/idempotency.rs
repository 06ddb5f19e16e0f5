//! Idempotent writes: one transaction per write request that does the work and stores the
//! answer under its key.
//!
//! The key's row (`sim_idempotency`, state `done`, with the answer) goes in with the work's
//! last round trip and becomes visible only when the transaction commits. A duplicate of a
//! finished request runs its work again and meets the key's row there: the unique key fails
//! its statement, the transaction rolls back, and the stored answer is replayed (422 when the
//! key was used for another request). A concurrent duplicate waits on the uncommitted row: on
//! PostgreSQL a short `lock_timeout` turns that wait into 409 `idempotency_in_flight`; on
//! SQLite writers are serialised (`BEGIN IMMEDIATE`) and the duplicate simply replays once the
//! first commits. A server killed mid-request commits nothing, so no key is ever stuck at 409.
//!
//! Claiming the key before the work would make the duplicate cheaper, but costs every keyed
//! write a round trip; duplicates are rare (retries, resumed sessions), writes are not.

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
use crate::store::{Backend, Stmt, StoreError, Tx};

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
///
/// With a key, the work runs first and the key's row goes in with the stored answer in the
/// request's last round trip (no separate claim): a duplicate — a retry after a lost answer,
/// a resumed session, a racing copy — does the work again, meets the committed key there
/// (a unique violation), and its work is rolled back and the stored answer replayed. While
/// the first copy is still running, the duplicate's key insert waits for it at most the short
/// lock timeout (then 409), set by that statement itself.
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
    // A rejection (4xx) keeps the key row and the stored answer and none of the work: the
    // domain validates before it writes and undoes a half-done checkout itself (see
    // `crate::domain`), so no savepoint is needed around the work.
    let (status, body) = match perform(&state.shop, &tx, ctx, op).await {
        Ok(done) => done,
        Err(e) if !e.status().is_server_error() => (e.status(), e.body()),
        // 5xx: nothing is kept. A duplicate whose work failed only because the first copy
        // already did it (its order exists) gets the stored answer.
        Err(e) => {
            drop(tx);
            return stored_answer(state, ctx, meta, key)
                .await?
                .map(Some)
                .ok_or(e);
        }
    };
    let body = body.to_string();
    let stored = key_row(state, &tx, ctx, meta, key, status, &body);
    let committed = match write_held(state, &tx, ctx, Some(stored)).await {
        Ok(Some(committed)) => committed,
        Ok(None) => {
            tx.rollback().await?;
            return Ok(None);
        }
        Err(e) if e.is_lock_timeout() => return Err(in_flight(state)),
        Err(e) => {
            drop(tx);
            return match stored_answer(state, ctx, meta, key).await? {
                Some(replay) => Ok(Some(replay)),
                None => Err(e.into()),
            };
        }
    };
    tx.commit().await?;
    committed.remember(state);
    Ok(Some(json_response(status, body)))
}

/// The insert of the key's row with its answer. On PostgreSQL it first sets the short lock
/// timeout (`set_config(…, true)` is `SET LOCAL`; the row to insert is produced after it), so
/// a duplicate waits at most that long for an uncommitted copy of its key. Nothing but
/// `COMMIT` (or the rare renumbering of held events) follows it in the transaction.
fn key_row(
    state: &AppState,
    tx: &Tx,
    ctx: &Ctx,
    meta: &WriteMeta,
    key: &str,
    status: StatusCode,
    body: &str,
) -> Stmt {
    let codec = tx.codec();
    let mut values = vec![
        codec.uuid(ctx.user_id),
        key.into(),
        meta.hash.as_str().into(),
        codec.ts(ctx.now),
        i64::from(status.as_u16()).into(),
        body.into(),
    ];
    let columns = "INSERT INTO sim_idempotency \
                     (user_id, idem_key, request_hash, state, created_at, status_code, response)";
    if tx.backend() == Backend::Postgres {
        let ms = state.config.idempotency_lock_timeout.as_millis().max(1);
        values.push(format!("{ms}ms").into());
        Stmt::new(
            format!(
                "{columns} SELECT $1, $2, $3, 'done', $4, $5, $6 \
                 FROM (SELECT set_config('lock_timeout', $7, true) AS short) AS short_wait"
            ),
            values,
        )
    } else {
        Stmt::new(
            format!("{columns} VALUES ($1, $2, $3, 'done', $4, $5, $6)"),
            values,
        )
    }
}

/// The answer stored under `key`, replayed (or 422 when the key was used for another
/// request, 409 when a row of an older version is still in flight); `None` when the key has
/// no row (or it cannot be read: the caller's own error says more).
async fn stored_answer(
    state: &AppState,
    ctx: &Ctx,
    meta: &WriteMeta,
    key: &str,
) -> Result<Option<Response>, ApiError> {
    let read = async {
        let tx = state.db.read().await?;
        let codec = tx.codec();
        let row = tx
            .query_opt(
                "SELECT request_hash, state, status_code, response FROM sim_idempotency \
                 WHERE user_id = $1 AND idem_key = $2",
                vec![codec.uuid(ctx.user_id), key.into()],
            )
            .await?;
        tx.commit().await?;
        Ok::<_, StoreError>(row)
    };
    let Ok(Some(row)) = read.await else {
        return Ok(None);
    };
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
    Ok(Some(resp))
}

/// Writes what `ctx` held back during the work, with `also` (the key's stored answer) in the
/// same round trip. `None`: a deferred session row is another user's and nothing was written
/// (roll back). What it returns is remembered once the caller has committed.
async fn write_held(
    state: &AppState,
    tx: &Tx,
    ctx: &Ctx,
    also: Option<Stmt>,
) -> Result<Option<Committed>, StoreError> {
    let also: Vec<Stmt> = also.into_iter().collect();
    let (Some(session), Some(events)) = (ctx.session_id, &ctx.events) else {
        exec_all(tx, also).await?;
        return Ok(Some(Committed(None)));
    };
    let expected = state.event_counts.expected_events(session);
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
