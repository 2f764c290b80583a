//! Opaque page cursors: where the last page ended, bound to the query that
//! produced it so a cursor cannot be replayed against another query.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::digest::sha256_hex;
use crate::sandbox::{HostError, SortKey};
use crate::store::Position;

#[derive(Serialize, Deserialize)]
struct Cursor {
    /// The query's fingerprint.
    q: String,
    /// The position after which the next page starts.
    p: Position,
}

/// A fingerprint of the object, filter and order a cursor belongs to.
pub(crate) fn fingerprint(object: &str, filter: &serde_json::Value, sort: &[SortKey]) -> String {
    let sort = serde_json::to_string(sort).expect("sort keys serialize");
    sha256_hex(format!("{object}\n{filter}\n{sort}").as_bytes())[..16].to_string()
}

/// The cursor for the page after `position`.
pub(crate) fn encode(query: &str, position: Position) -> String {
    let cursor = Cursor { q: query.to_string(), p: position };
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&cursor).expect("cursors serialize"))
}

/// The position in `text`, if it was issued for `query` with `keys` sort keys.
pub(crate) fn decode(text: &str, query: &str, keys: usize) -> Result<Position, HostError> {
    let invalid = || HostError::Invalid(format!("cursor `{text}` was not issued by this engine"));
    let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| invalid())?;
    let cursor: Cursor = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    if cursor.q != query || cursor.p.keys.len() != keys {
        return Err(HostError::Invalid(
            "cursor belongs to a different query: pass the same object, filter and sort as the page it came from"
                .into(),
        ));
    }
    Ok(cursor.p)
}
