//! Who an action is performed as: a user, the permission profiles they hold,
//! and attributes that record filters may refer to.
//!
//! This module only describes principals; deciding what a principal may do
//! belongs to the permission engine.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A user and the profiles whose permissions they hold.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Principal {
    /// The user's identifier.
    pub user_id: String,
    /// Permission profiles, for example `sales` or `admin`.
    #[serde(default)]
    pub profiles: Vec<String>,
    /// Further attributes (`teamId`, `level`, …) used by record filters.
    #[serde(default)]
    pub metadata: Map<String, Value>,
}

impl Principal {
    /// A principal with the given user id and profiles and no metadata.
    pub fn new(user_id: impl Into<String>, profiles: &[&str]) -> Self {
        Self {
            user_id: user_id.into(),
            profiles: profiles.iter().map(|p| p.to_string()).collect(),
            metadata: Map::new(),
        }
    }
}
