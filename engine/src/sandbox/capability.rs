//! The capabilities a handler can request, and how a component's imports
//! map onto them.
//!
//! A component's imports are its request for authority. This module is the
//! one place that decides which import names are a capability, which are
//! always granted (the job's own log and progress, shared types, WASI), and
//! which are unknown. It never decides whether a principal holds a
//! capability; callers supply the grant set.

use std::fmt;

/// The package every contract interface belongs to.
pub const CONTRACT_PACKAGE: &str = "objectos:jobs";
/// The contract version this engine implements.
pub const CONTRACT_VERSION: &str = "0.1.0";

/// One capability interface of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Capability {
    /// `records`: read records the principal can see.
    Records,
    /// `records-write`: insert, update and delete records.
    RecordsWrite,
    /// `records-import`: insert records with their original system fields.
    RecordsImport,
    /// `artifacts`: write artifacts.
    Artifacts,
    /// `artifacts-read`: read artifacts back.
    ArtifactsRead,
}

impl Capability {
    /// Every capability, in a stable order.
    pub const ALL: [Capability; 5] = [
        Capability::Records,
        Capability::RecordsWrite,
        Capability::RecordsImport,
        Capability::Artifacts,
        Capability::ArtifactsRead,
    ];

    /// The interface name in the WIT contract, for example `records-write`.
    pub fn interface(self) -> &'static str {
        match self {
            Capability::Records => "records",
            Capability::RecordsWrite => "records-write",
            Capability::RecordsImport => "records-import",
            Capability::Artifacts => "artifacts",
            Capability::ArtifactsRead => "artifacts-read",
        }
    }

    /// Parses an interface name such as `records-write`.
    pub fn from_interface(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.interface() == name)
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.interface())
    }
}

/// A set of capabilities.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct CapabilitySet(u8);

impl CapabilitySet {
    /// No capabilities: the job may only log and report progress.
    pub const fn empty() -> Self {
        Self(0)
    }

    /// Every capability.
    pub fn all() -> Self {
        Capability::ALL.into_iter().collect()
    }

    /// Adds `capability`.
    pub fn insert(&mut self, capability: Capability) {
        self.0 |= capability.bit();
    }

    /// Whether `capability` is in the set.
    pub fn contains(self, capability: Capability) -> bool {
        self.0 & capability.bit() != 0
    }

    /// The capabilities in `self` that are not in `other`.
    pub fn difference(self, other: CapabilitySet) -> CapabilitySet {
        Self(self.0 & !other.0)
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The capabilities in the set, in a stable order.
    pub fn iter(self) -> impl Iterator<Item = Capability> {
        Capability::ALL.into_iter().filter(move |c| self.contains(*c))
    }
}

impl FromIterator<Capability> for CapabilitySet {
    fn from_iter<I: IntoIterator<Item = Capability>>(iter: I) -> Self {
        let mut set = Self::empty();
        for capability in iter {
            set.insert(capability);
        }
        set
    }
}

impl fmt::Display for CapabilitySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<_> = self.iter().map(Capability::interface).collect();
        f.write_str(&names.join(", "))
    }
}

/// What one import of a component is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportKind {
    /// Part of the contract and always linked: `log`, `progress`, shared types.
    Always,
    /// A capability the job must be granted.
    Capability(Capability),
    /// A WASI 0.2 interface: linked for every guest, empty of authority.
    Wasi,
    /// A contract interface of another version than this engine implements.
    WrongVersion,
    /// Anything else: the engine cannot satisfy it.
    Unknown,
}

/// The WASI 0.2 packages the sandbox links (all without authority).
const WASI_PACKAGES: [&str; 6] =
    ["wasi:cli/", "wasi:clocks/", "wasi:filesystem/", "wasi:io/", "wasi:random/", "wasi:sockets/"];

/// Classifies one import name, for example `objectos:jobs/records@0.1.0`.
pub fn classify_import(name: &str) -> ImportKind {
    if let Some(rest) = name.strip_prefix("objectos:jobs/") {
        let (interface, version) = rest.split_once('@').unwrap_or((rest, ""));
        if version != CONTRACT_VERSION {
            return ImportKind::WrongVersion;
        }
        return match interface {
            "types" | "log" | "progress" | "artifact-types" => ImportKind::Always,
            other => {
                Capability::from_interface(other).map(ImportKind::Capability).unwrap_or(ImportKind::Unknown)
            }
        };
    }
    let is_wasi_p2 = WASI_PACKAGES.iter().any(|p| name.starts_with(p))
        && name.rsplit_once('@').is_some_and(|(_, v)| v.starts_with("0.2."));
    if is_wasi_p2 { ImportKind::Wasi } else { ImportKind::Unknown }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imports_are_classified() {
        assert_eq!(classify_import("objectos:jobs/log@0.1.0"), ImportKind::Always);
        assert_eq!(
            classify_import("objectos:jobs/records-write@0.1.0"),
            ImportKind::Capability(Capability::RecordsWrite)
        );
        assert_eq!(classify_import("objectos:jobs/records@0.2.0"), ImportKind::WrongVersion);
        assert_eq!(classify_import("wasi:cli/stdout@0.2.6"), ImportKind::Wasi);
        assert_eq!(classify_import("wasi:http/outgoing-handler@0.2.6"), ImportKind::Unknown);
        assert_eq!(classify_import("wasi:cli/stdout@0.3.0"), ImportKind::Unknown);
        assert_eq!(classify_import("acme:net/socket"), ImportKind::Unknown);
    }

    #[test]
    fn set_operations() {
        let requested: CapabilitySet = [Capability::Records, Capability::Artifacts].into_iter().collect();
        let granted: CapabilitySet = [Capability::Records].into_iter().collect();
        let missing = requested.difference(granted);
        assert_eq!(missing.to_string(), "artifacts");
        assert!(requested.difference(CapabilitySet::all()).is_empty());
    }
}
