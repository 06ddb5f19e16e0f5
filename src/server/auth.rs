//! `Authorization: Bearer dev:<agent_id>` → the agent's user.
//!
//! The agent → user mapping never changes while the server runs, so it is cached in memory
//! after the first lookup (only known agents are cached, so the cache is bounded by the agents
//! table).

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use uuid::Uuid;

use super::error::ApiError;
use super::state::AppState;

/// Resolves the caller's user from the `Authorization` header.
pub(crate) async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Uuid, ApiError> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Err(ApiError::unauthorized("missing bearer token"));
    };
    let agent = value
        .to_str()
        .ok()
        .and_then(bearer_token)
        .and_then(|t| t.strip_prefix("dev:"))
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| ApiError::unauthorized("Unknown agent"))?;
    if let Some(user) = state.agents.read().get(agent) {
        return Ok(*user);
    }
    let tx = state.db.read().await?;
    let user = state.shop.user_for_agent(&tx, agent).await?;
    tx.commit().await?;
    match user {
        Some(user) => {
            state.agents.write().insert(agent.to_string(), user);
            Ok(user)
        }
        None => Err(ApiError::unauthorized("Unknown agent")),
    }
}

/// The token of a `Bearer` header value (scheme case-insensitive).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn parses_bearer_tokens() {
        assert_eq!(bearer_token("Bearer dev:agent_001"), Some("dev:agent_001"));
        assert_eq!(bearer_token("bearer  dev:a "), Some("dev:a"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer"), None);
    }
}
