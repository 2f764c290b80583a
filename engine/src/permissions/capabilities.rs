//! Which capabilities a principal's permissions grant a job (SPEC section
//! 6): `records` if it can read some object, `records-write` if it can
//! create, edit or delete some object, `records-import` with the system
//! permission `records.import`, `artifacts` with `artifacts.write`,
//! `artifacts-read` with `artifacts.read`. This is the queue's policy.

use super::{Action, Permissions, PermissionsDir};
use crate::ownership::Scope;
use crate::principal::Principal;
use crate::queue::Policy;
use crate::sandbox::{Capability, CapabilitySet};

/// The system permission that lets a caller enqueue jobs running as another principal.
pub const IMPERSONATE: &str = "jobs.impersonate";

impl Permissions {
    /// The capabilities a job running as `principal` holds.
    pub fn capabilities(&self, principal: &Principal) -> CapabilitySet {
        if self.is_unrestricted() {
            return CapabilitySet::all();
        }
        let can = |action| !self.objects_allowing(principal, action).is_empty();
        let holds = |permission| self.system(principal, permission).allowed;
        let mut granted = CapabilitySet::empty();
        let rules = [
            (Capability::Records, can(Action::Read)),
            (Capability::RecordsWrite, can(Action::Create) || can(Action::Edit) || can(Action::Delete)),
            (Capability::RecordsImport, holds("records.import")),
            (Capability::Artifacts, holds("artifacts.write")),
            (Capability::ArtifactsRead, holds("artifacts.read")),
        ];
        for (capability, granted_here) in rules {
            if granted_here {
                granted.insert(capability);
            }
        }
        granted
    }
}

impl Policy for PermissionsDir {
    fn grants(&self, principal: &Principal) -> CapabilitySet {
        self.current().capabilities(principal)
    }

    fn may_impersonate(&self, caller: &Principal) -> bool {
        self.current().system(caller, IMPERSONATE).allowed
    }

    fn scope(&self, principal: &Principal, any: &str) -> Scope {
        self.current().scope(principal, any)
    }
}

impl Permissions {
    /// Whose things `principal` reaches: everyone's with the system
    /// permission `any` (one of [`crate::ownership`]'s `.any` permissions),
    /// otherwise its own.
    pub fn scope(&self, principal: &Principal, any: &str) -> Scope {
        match self.system(principal, any).allowed {
            true => Scope::Any,
            false => Scope::Owner(principal.user_id.clone()),
        }
    }
}
