//! Bearer tokens, each mapped to a principal. Only a token's sha256 is
//! ever stored or compared (in constant time), and tokens are never logged.
//!
//! Tokens come from the config (`api.tokens`) and from `api-tokens.json`
//! in the data directory, where the first start with no token anywhere
//! stores the digest of the admin token it creates and prints once.

use std::io;
use std::path::Path;

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use sha2::{Digest, Sha256};

use super::ApiError;
use crate::config::TokenConfig;
use crate::digest::sha256_hex;
use crate::principal::Principal;

/// The file in the data directory holding created tokens' digests.
pub const TOKEN_FILE: &str = "api-tokens.json";

/// The tokens a server accepts.
pub struct Tokens {
    known: Vec<([u8; 32], TokenConfig)>,
}

/// The request's authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The token's name.
    pub token: String,
    /// Who the caller acts as.
    pub principal: Principal,
}

fn digest_bytes(hex: &str) -> Option<[u8; 32]> {
    let mut bytes = [0u8; 32];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(bytes)
}

/// Equality that takes the same time wherever the first difference is.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    // `black_box` keeps the compiler from ending the fold at the first difference.
    std::hint::black_box(a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y))) == 0
}

impl Tokens {
    /// The tokens `configured` (their digests already validated).
    pub fn new(configured: Vec<TokenConfig>) -> Self {
        let known = configured.into_iter().filter_map(|t| Some((digest_bytes(&t.sha256)?, t))).collect();
        Self { known }
    }

    /// The caller the `Authorization: Bearer <token>` header names.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        let header = headers.get(AUTHORIZATION).ok_or_else(|| {
            ApiError::unauthorized("this request needs a token: send `Authorization: Bearer <token>`")
        })?;
        let token = header
            .to_str()
            .ok()
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|token| !token.is_empty())
            .ok_or_else(|| ApiError::unauthorized("the Authorization header must be `Bearer <token>`"))?;
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        // Compare with every token and keep the first match without a branch
        // on it, so the work done says nothing of which (or whether one)
        // matched: only the digest is ever computed from the presented token.
        let mut found: Option<&TokenConfig> = None;
        for (digest, config) in &self.known {
            let take = (same(digest, &presented) as usize) & (found.is_none() as usize);
            found = [found, Some(config)][take];
        }
        found
            .map(|config| Caller { token: config.name.clone(), principal: config.principal.clone() })
            .ok_or_else(|| ApiError::unauthorized("the token is not valid (it may have been revoked)"))
    }
}

/// A new random token: `oos_` and 64 hex digits (256 bits).
pub fn new_token() -> io::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| io::Error::other(e.to_string()))?;
    Ok(format!("oos_{}", crate::digest::hex(&bytes)))
}

/// The tokens for a server on `data_dir`: `configured` plus those created
/// there before. With none at all, creates an admin token (profile
/// `admin`), stores its digest and returns the token to be shown once.
pub fn load(data_dir: &Path, configured: &[TokenConfig]) -> io::Result<(Tokens, Option<String>)> {
    let file = data_dir.join(TOKEN_FILE);
    let mut created: Vec<TokenConfig> = match std::fs::read(&file) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| io::Error::other(format!("{}: {e}", file.display())))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    let mut shown = None;
    if configured.is_empty() && created.is_empty() {
        let token = new_token()?;
        created.push(TokenConfig {
            name: "admin".into(),
            sha256: sha256_hex(token.as_bytes()),
            principal: Principal::new("admin", &["admin"]),
        });
        let json = serde_json::to_vec_pretty(&created).map_err(io::Error::other)?;
        write_private(&file, &json)?;
        shown = Some(token);
    }
    let all = configured.iter().cloned().chain(created).collect();
    Ok((Tokens::new(all), shown))
}

/// Writes `bytes` to `path` readable by its owner only.
fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file =
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn a_token_authenticates_as_its_principal_and_nothing_else_does() {
        let dir = tempfile::tempdir().unwrap();
        let (tokens, shown) = load(dir.path(), &[]).unwrap();
        let token = shown.expect("the first start creates a token");
        assert!(token.starts_with("oos_") && token.len() == 68);
        let stored = std::fs::read_to_string(dir.path().join(TOKEN_FILE)).unwrap();
        assert!(!stored.contains(&token), "only the digest is stored");
        let caller = tokens.authenticate(&headers(&format!("Bearer {token}"))).unwrap();
        assert_eq!(caller.principal, Principal::new("admin", &["admin"]));
        for bad in ["Bearer oos_nope", &format!("Basic {token}"), "Bearer ", &token] {
            let error = tokens.authenticate(&headers(bad)).unwrap_err();
            assert_eq!(error.status, 401, "{bad}");
        }
        assert_eq!(tokens.authenticate(&HeaderMap::new()).unwrap_err().status, 401);

        let (_, again) = load(dir.path(), &[]).unwrap();
        assert!(again.is_none(), "the token is created once");
    }
}
