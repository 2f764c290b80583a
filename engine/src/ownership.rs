//! Who may see what: every job (with its attempts, logs, progress and
//! result), artifact and schedule has owners, and a principal without the
//! matching `.any` system permission reaches only what it owns.
//!
//! - A job is owned by the user it runs as and by the user who enqueued it
//!   (they differ under impersonation, and for a schedule's fires: the
//!   schedule's creator enqueues).
//! - An artifact is owned as the job that wrote it.
//! - A schedule is owned by its creator.
//!
//! A [`Scope`] travels with every read or change into the queue, the
//! scheduler, the artifacts and the store's listings, which filter by it in
//! their query, so pages and counts see only what the scope admits.
//! Something outside the scope is answered as if it did not exist.

/// Reads anyone's jobs, their logs, and retries them.
pub const JOBS_READ_ANY: &str = "jobs.read.any";
/// Cancels anyone's jobs.
pub const JOBS_CANCEL_ANY: &str = "jobs.cancel.any";
/// Reads anyone's artifacts, over the API and from a guest.
pub const ARTIFACTS_READ_ANY: &str = "artifacts.read.any";
/// Reads anyone's schedules.
pub const SCHEDULES_READ_ANY: &str = "schedules.read.any";
/// Changes anyone's schedules, and creates a schedule under an id of the
/// caller's choosing (ids are shared by all, so choosing one would tell
/// whether another principal holds it).
pub const SCHEDULES_WRITE_ANY: &str = "schedules.write.any";

/// Whose jobs, artifacts or schedules a caller reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Everyone's: a `.any` permission, or the engine itself.
    Any,
    /// Only those this user owns.
    Owner(String),
}

impl Scope {
    /// Whether the scope admits something owned by `owners`.
    pub fn admits<'a>(&self, owners: impl IntoIterator<Item = &'a str>) -> bool {
        match self {
            Scope::Any => true,
            Scope::Owner(user) => owners.into_iter().any(|owner| owner == user),
        }
    }

    /// The one owner a listing is narrowed to, if any.
    pub fn owner(&self) -> Option<&str> {
        match self {
            Scope::Any => None,
            Scope::Owner(user) => Some(user),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scope_admits_what_its_user_owns() {
        let ada = Scope::Owner("ada".into());
        assert!(ada.admits(["bob", "ada"]));
        assert!(!ada.admits(["bob"]));
        assert!(!ada.admits([]));
        assert!(Scope::Any.admits(["bob"]));
        assert_eq!(ada.owner(), Some("ada"));
        assert_eq!(Scope::Any.owner(), None);
    }
}
