//! HS256 JSON Web Tokens as the real VoiceOffers backend (Supabase auth) expects them:
//! `sub` = the user's id, `aud` = `role` = `authenticated`, `iat`/`exp` on the wall clock.
//!
//! HMAC-SHA256 is built from `sha2` (RFC 2104) rather than pulling in a JWT crate and a second
//! digest version; it is checked against the RFC 4231 test vectors.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The audience and role of every minted token.
pub const AUDIENCE: &str = "authenticated";

/// Claims of a minted token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user's id.
    pub sub: Uuid,
    /// `authenticated`.
    pub aud: String,
    /// `authenticated`.
    pub role: String,
    /// Issued at (Unix seconds).
    pub iat: i64,
    /// Expires at (Unix seconds).
    pub exp: i64,
}

/// Why a token did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// Not three base64url parts of JSON.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// Not HS256.
    #[error("unsupported algorithm {0}; expected HS256")]
    Algorithm(String),
    /// The signature does not match the secret.
    #[error("bad signature")]
    Signature,
}

/// HMAC-SHA256 of `message` under `key` (RFC 2104).
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| k.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// Signs `claims` with HS256.
pub fn encode(claims: &Claims, secret: &[u8]) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    // Serialising a struct of plain fields cannot fail.
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
    let signing_input = format!("{header}.{payload}");
    let sig = URL_SAFE_NO_PAD.encode(hmac_sha256(secret, signing_input.as_bytes()));
    format!("{signing_input}.{sig}")
}

/// Verifies an HS256 token's signature and returns its claims (expiry is not checked).
pub fn decode(token: &str, secret: &[u8]) -> Result<Claims, JwtError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed("expected three parts".into()));
    };
    let b64 = |x: &str| {
        URL_SAFE_NO_PAD
            .decode(x)
            .map_err(|e| JwtError::Malformed(e.to_string()))
    };
    let header: serde_json::Value =
        serde_json::from_slice(&b64(h)?).map_err(|e| JwtError::Malformed(e.to_string()))?;
    let alg = header["alg"].as_str().unwrap_or_default();
    if alg != "HS256" {
        return Err(JwtError::Algorithm(alg.to_string()));
    }
    let expected = hmac_sha256(secret, format!("{h}.{p}").as_bytes());
    let given = b64(s)?;
    // Constant-time comparison.
    if given.len() != expected.len()
        || given
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            != 0
    {
        return Err(JwtError::Signature);
    }
    serde_json::from_slice(&b64(p)?).map_err(|e| JwtError::Malformed(e.to_string()))
}

/// Most cached tokens; beyond it the cache is emptied (tokens are cheap to mint).
const MAX_CACHED: usize = 100_000;
/// A cached token is re-minted this long before it expires.
const RENEW_BEFORE_SECS: i64 = 60;

/// Agent → (token, expiry in Unix seconds).
type TokenCache = HashMap<Arc<str>, (Arc<str>, i64)>;

/// Mints and caches one token per agent until shortly before it expires.
pub(crate) struct Minter {
    secret: Vec<u8>,
    ttl_secs: i64,
    cache: Mutex<TokenCache>,
}

impl std::fmt::Debug for Minter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Minter")
            .field("ttl_secs", &self.ttl_secs)
            .finish()
    }
}

impl Minter {
    /// A minter with `secret` and tokens valid for `ttl`.
    pub fn new(secret: &str, ttl: Duration) -> Self {
        Self {
            secret: secret.as_bytes().to_vec(),
            ttl_secs: i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The token of `agent` (user `user_id`) at wall time `now` (Unix seconds).
    pub fn token(&self, agent: &Arc<str>, user_id: Uuid, now: i64) -> Arc<str> {
        let mut cache = self.cache.lock();
        if let Some((token, exp)) = cache.get(agent)
            && *exp - RENEW_BEFORE_SECS > now
        {
            return token.clone();
        }
        let claims = Claims {
            sub: user_id,
            aud: AUDIENCE.into(),
            role: AUDIENCE.into(),
            iat: now,
            exp: now.saturating_add(self.ttl_secs),
        };
        let token: Arc<str> = encode(&claims, &self.secret).into();
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(agent.clone(), (token.clone(), claims.exp));
        token
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test cases 1, 2 and 6 (a key longer than the block).
        assert_eq!(
            hex(&hmac_sha256(&[0x0b; 20], b"Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        assert_eq!(
            hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hex(&hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn tokens_round_trip_and_are_cached_until_near_expiry() {
        let m = Minter::new("top-secret", Duration::from_secs(3600));
        let agent: Arc<str> = "agent_001".into();
        let user = Uuid::from_u128(7);
        let t = m.token(&agent, user, 1_000);
        let claims = decode(&t, b"top-secret").unwrap();
        assert_eq!(
            claims,
            Claims {
                sub: user,
                aud: "authenticated".into(),
                role: "authenticated".into(),
                iat: 1_000,
                exp: 4_600,
            }
        );
        assert_eq!(decode(&t, b"wrong").unwrap_err(), JwtError::Signature);
        assert!(Arc::ptr_eq(&t, &m.token(&agent, user, 4_000)));
        let renewed = m.token(&agent, user, 4_560);
        assert_eq!(decode(&renewed, b"top-secret").unwrap().iat, 4_560);
        assert!(decode("a.b", b"x").is_err());
    }
}
