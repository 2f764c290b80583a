//! The audit log's tamper-evident chain: what an entry holds, the exact
//! bytes it is stored as, the hash linking it to the one before, and the
//! verification that recomputes the chain from stored bytes.
//!
//! Each entry is stored as its canonical JSON bytes (fields in a fixed
//! order, no insignificant whitespace) together with
//! `hash = sha256(previous hash ‖ "\n" ‖ bytes)` in lowercase hex; the first
//! entry's previous hash is [`GENESIS`]. Verification never trusts anything
//! but the stored bytes: it checks that every entry parses, that sequence
//! numbers run without a gap from the first, and that every hash is the one
//! the bytes and the previous hash give. Any changed, removed, inserted or
//! reordered entry breaks it at that entry; a truncated log is caught
//! against a [`Checkpoint`] written out earlier.
//!
//! [`feed`] fills the log from the outboxes; [`log`] reads, verifies,
//! exports and prunes it through the store.

pub mod feed;
pub mod log;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::digest::hex;

/// The previous hash of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Who did it, as the audit log records them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuditActor {
    /// The user.
    pub user_id: String,
    /// The profiles they held.
    pub profiles: Vec<String>,
}

/// How it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditOutcome {
    /// It happened.
    Success,
    /// It was attempted and failed.
    Failure,
    /// It was refused by a permission.
    Denied,
}

/// The job an entry is about, as typed fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuditJob {
    /// The job's id.
    pub job_id: String,
    /// Its handler.
    pub job_name: String,
    /// The attempt concerned (0 before the first).
    pub attempt: u32,
    /// The error, for a failed attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// A short summary of the result, for a completed job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_summary: Option<String>,
}

/// One entry of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuditEntry {
    /// Gapless position in the log, from 1.
    pub seq: u64,
    /// When it happened (UTC), always written with milliseconds and `Z` so
    /// that times compare as text.
    #[serde(with = "millis")]
    pub at: DateTime<Utc>,
    /// The event type, for example `job.completed`.
    pub event: String,
    /// Who.
    pub actor: AuditActor,
    /// What it concerns, for example `jobs/job_…` or `objects/contacts`.
    pub resource: String,
    /// The action, for example `complete` or `read`.
    pub action: String,
    /// How it ended.
    pub outcome: AuditOutcome,
    /// The job fields, when it concerns a job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<AuditJob>,
    /// Everything else the event carried.
    pub metadata: Value,
    /// The node that recorded it.
    pub node_id: String,
}

impl AuditEntry {
    /// The exact bytes the entry is stored as.
    pub fn encode(&self) -> Vec<u8> {
        // Most entries fit: one allocation rather than a growing vector.
        let mut bytes = Vec::with_capacity(512);
        serde_json::to_writer(&mut bytes, self).expect("audit entries serialize");
        bytes
    }
}

/// The hash of an entry stored as `bytes` after an entry hashed `previous`.
pub fn link(previous: &str, bytes: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(previous.as_bytes());
    hasher.update(b"\n");
    hasher.update(bytes);
    hex(&hasher.finalize())
}

/// An entry as stored: its sequence number, bytes and hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    /// The sequence number the store keeps it under.
    pub seq: u64,
    /// The entry's bytes.
    pub bytes: Vec<u8>,
    /// The stored hash.
    pub hash: String,
}

/// Chains `entries` (their `seq` set from `after`) onto a log whose last
/// entry is `after` with hash `previous`, returning them as stored.
pub fn chain(after: u64, previous: &str, entries: Vec<AuditEntry>) -> Vec<StoredEntry> {
    chain_into(after, previous, entries, |stored, _| stored)
}

/// [`chain`], handing each entry as stored and the entry itself to `row`,
/// which keeps what it needs of them without copying.
pub fn chain_into<R>(
    mut after: u64,
    previous: &str,
    entries: Vec<AuditEntry>,
    mut row: impl FnMut(StoredEntry, AuditEntry) -> R,
) -> Vec<R> {
    let mut previous = previous.to_string();
    entries
        .into_iter()
        .map(|mut entry| {
            after += 1;
            entry.seq = after;
            let bytes = entry.encode();
            let hash = link(&previous, &bytes);
            previous.clone_from(&hash);
            row(StoredEntry { seq: after, bytes, hash }, entry)
        })
        .collect()
}

/// A point of the chain written out to be checked later: its sequence
/// number and hash. A log that no longer reaches it was truncated; one
/// that reaches it with another hash was rewritten.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The sequence number of the entry.
    pub seq: u64,
    /// Its hash.
    pub hash: String,
}

/// What verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// The chain holds: how many entries were checked and the head.
    Valid {
        /// Entries checked.
        count: u64,
        /// The last entry (seq and hash), if any.
        head: Option<Checkpoint>,
    },
    /// The first entry that does not hold, and why.
    Broken {
        /// Its sequence number (as stored, or the one expected there).
        seq: u64,
        /// What is wrong.
        reason: String,
    },
}

impl Verification {
    /// The verdict as the API and `objectos audit verify --json` print it:
    /// `{"valid": true, "count", "head"}` or `{"valid": false, "seq", "reason"}`.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Verification::Valid { count, head } => {
                serde_json::json!({"valid": true, "count": count, "head": head})
            }
            Verification::Broken { seq, reason } => {
                serde_json::json!({"valid": false, "seq": seq, "reason": reason})
            }
        }
    }
}

/// Checks stored entries one at a time, in order, so a log of any length
/// is verified in pages with constant memory.
#[derive(Debug, Clone)]
pub struct Verifier {
    seq: u64,
    previous: String,
    count: u64,
    expect: Vec<Checkpoint>,
}

impl Verifier {
    /// A verifier for a log beginning after `start` (the genesis when
    /// `None`, or the checkpoint retention kept), that must reach every
    /// checkpoint in `expect` with the same hash.
    pub fn new(start: Option<&Checkpoint>, expect: &[Checkpoint]) -> Self {
        let (seq, previous) = start.map_or((0, GENESIS.to_string()), |c| (c.seq, c.hash.clone()));
        Self { seq, previous, count: 0, expect: expect.to_vec() }
    }

    /// Checks the next entry; on failure, the verification that failed.
    pub fn push(&mut self, stored: &StoredEntry) -> Result<(), Verification> {
        self.push_page(std::slice::from_ref(stored))
    }

    /// Checks the next entries, in order. Each entry's hash is recomputed
    /// from its bytes and the stored hash of the one before it, so a page
    /// is hashed on every core; the checks then run in order, and as each
    /// stored hash is confirmed before the next entry relies on it, the
    /// answer is the one a sequential pass gives.
    pub fn push_page<E: AsRef<StoredEntry> + Sync>(&mut self, page: &[E]) -> Result<(), Verification> {
        let previous =
            |i: usize| if i == 0 { self.previous.as_str() } else { page[i - 1].as_ref().hash.as_str() };
        let computed = parallel_map(page.len(), |i| {
            let stored = page[i].as_ref();
            (numbered(&stored.bytes), link(previous(i), &stored.bytes))
        });
        for (stored, (claimed, hash)) in page.iter().map(AsRef::as_ref).zip(computed) {
            let expected = self.seq + 1;
            let broken = |reason: String| Verification::Broken { seq: expected, reason };
            if stored.seq != expected {
                return Err(broken(format!(
                    "entry {expected} is missing (the next stored entry is {})",
                    stored.seq
                )));
            }
            let claimed =
                claimed.map_err(|error| broken(format!("entry {expected} is not a valid entry: {error}")))?;
            if claimed != expected {
                return Err(broken(format!("entry {expected} says it is entry {claimed}")));
            }
            if hash != stored.hash {
                return Err(broken(format!(
                    "entry {expected}'s hash does not match its bytes and the chain"
                )));
            }
            if self.expect.iter().any(|c| c.seq == expected && c.hash != hash) {
                return Err(broken(format!("entry {expected} differs from the checkpoint taken of it")));
            }
            self.seq = expected;
            self.previous = hash;
            self.count += 1;
        }
        Ok(())
    }

    /// [`push_page`](Self::push_page) for entries as the store filed them:
    /// their query columns must say what their bytes say, since a column
    /// that differs would hide the entry from, or misfile it in, `audit ls`.
    pub fn push_filed(&mut self, rows: &[crate::store::FiledEntry]) -> Result<(), Verification> {
        match rows.iter().position(|row| row.misfiled.is_some()) {
            None => self.push_page(rows),
            Some(bad) => {
                self.push_page(&rows[..bad])?;
                let seq = rows[bad].stored.seq;
                let column = rows[bad].misfiled.unwrap_or_default();
                Err(Verification::Broken {
                    seq,
                    reason: format!(
                        "entry {seq}'s stored `{column}` does not match its bytes: `audit ls` would misfile it"
                    ),
                })
            }
        }
    }

    /// The verdict once every stored entry has been pushed; `head` is the
    /// end the store records, which the entries must reach exactly.
    pub fn finish(self, head: Option<&Checkpoint>) -> Verification {
        let seq = self.seq;
        let broken = |reason: String| Verification::Broken { seq: seq + 1, reason };
        if let Some(beyond) = self.expect.iter().filter(|c| c.seq > seq).map(|c| c.seq).min() {
            return broken(format!(
                "the log ends at entry {seq} but a checkpoint was taken at entry {beyond}: it was truncated"
            ));
        }
        if let Some(head) = head
            && (head.seq != seq || head.hash != self.previous)
        {
            return broken(format!(
                "the log ends at entry {seq} but its head records entry {}: entries were removed or altered",
                head.seq
            ));
        }
        let head = (seq > 0).then_some(Checkpoint { seq, hash: self.previous });
        Verification::Valid { count: self.count, head }
    }
}

impl AsRef<StoredEntry> for StoredEntry {
    fn as_ref(&self) -> &StoredEntry {
        self
    }
}

/// The query columns as an entry's bytes give them.
#[derive(serde::Deserialize)]
struct Filed<'a> {
    #[serde(borrow)]
    at: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    event: std::borrow::Cow<'a, str>,
    actor: FiledActor<'a>,
    #[serde(borrow)]
    resource: std::borrow::Cow<'a, str>,
    job: Option<FiledJob<'a>>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct FiledActor<'a> {
    #[serde(borrow)]
    user_id: std::borrow::Cow<'a, str>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct FiledJob<'a> {
    #[serde(borrow)]
    job_id: std::borrow::Cow<'a, str>,
}

/// The first query column of `row` that its bytes do not bear out, if any
/// (bytes that do not parse are the hash check's to report): for a store
/// that holds its rows in memory.
pub(crate) fn misfiled(row: &crate::store::AuditRow) -> Option<&'static str> {
    let filed: Filed<'_> = serde_json::from_slice(&row.stored.bytes).ok()?;
    let at = DateTime::parse_from_rfc3339(&filed.at).ok().map(|at| at.timestamp_millis());
    let job = filed.job.as_ref().map(|job| job.job_id.as_ref());
    [
        ("at", at == Some(row.at.timestamp_millis())),
        ("event", filed.event == row.event),
        ("user_id", filed.actor.user_id == row.user_id),
        ("resource", filed.resource == row.resource),
        ("job_id", job == row.job_id.as_deref()),
    ]
    .into_iter()
    .find(|(_, agrees)| !agrees)
    .map(|(column, _)| column)
}

/// What a log whose start was removed (retention keeps the last removed
/// entry as `start`) proves, before its entries are checked: a broken
/// verdict, or `None` to go on.
///
/// Whoever can write the database can delete a prefix and write such a
/// marker, consistent with the entries left (the marker is just one of
/// them). So: with retention off, a marker is itself the proof of a cut;
/// and a checkpoint the operator kept from inside the removed prefix is
/// accounted for only by also presenting the checkpoint of the marker
/// itself, kept when retention logged it.
pub fn check_pruned_start(
    start: &Checkpoint,
    expect: &[Checkpoint],
    retention_on: bool,
) -> Option<Verification> {
    let n = start.seq;
    if !retention_on {
        return Some(Verification::Broken {
            seq: 1,
            reason: format!(
                "entries 1 to {n} are gone and marked as pruned, but retention is off (audit.retention): \
                 the log was cut short"
            ),
        });
    }
    if let Some(kept) = expect.iter().find(|c| c.seq == n && c.hash != start.hash) {
        return Some(Verification::Broken {
            seq: kept.seq,
            reason: format!("the log's retained start (entry {n}) differs from the checkpoint taken of it"),
        });
    }
    let acknowledged = expect.contains(start);
    expect.iter().filter(|c| c.seq < n && !acknowledged).map(|c| c.seq).min().map(|inside| {
        Verification::Broken {
            seq: inside,
            reason: format!(
                "a checkpoint was taken at entry {inside}, inside the removed start (entries 1 to {n}): a \
             retention prune and a cut look alike; pass the checkpoint {n}:{} logged when retention removed \
             them to accept it",
                start.hash
            ),
        }
    })
}

/// Verifies stored entries in order: see [`Verifier`].
pub fn verify(
    entries: impl IntoIterator<Item = StoredEntry>,
    start: Option<&Checkpoint>,
    expect: &[Checkpoint],
) -> Verification {
    let mut verifier = Verifier::new(start, expect);
    for stored in entries {
        if let Err(broken) = verifier.push(&stored) {
            return broken;
        }
    }
    verifier.finish(None)
}

/// The sequence number an entry's bytes claim. The whole entry must be
/// one well-formed JSON object; its other fields are covered by the hash.
fn numbered(bytes: &[u8]) -> Result<u64, serde_json::Error> {
    #[derive(Deserialize)]
    struct Numbered {
        seq: u64,
    }
    serde_json::from_slice::<Numbered>(bytes).map(|n| n.seq)
}

/// `f(0..len)` in order, split across the machine's cores when it is long
/// enough to be worth it.
fn parallel_map<T: Send>(len: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    const MIN_PER_THREAD: usize = 512;
    let threads =
        std::thread::available_parallelism().map_or(1, |n| n.get()).min(len / MIN_PER_THREAD).max(1);
    if threads == 1 {
        return (0..len).map(f).collect();
    }
    let per = len.div_ceil(threads);
    std::thread::scope(|scope| {
        let f = &f;
        let parts: Vec<_> = (0..threads)
            .map(|t| scope.spawn(move || (t * per..((t + 1) * per).min(len)).map(f).collect::<Vec<T>>()))
            .collect();
        parts.into_iter().flat_map(|part| part.join().expect("hashing does not panic")).collect()
    })
}

/// `at` as RFC 3339 with milliseconds and `Z`.
mod millis {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&crate::store::records::timestamp(*at))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<DateTime<Utc>, D::Error> {
        let text = <&str>::deserialize(deserializer)?;
        DateTime::parse_from_rfc3339(text).map(|at| at.with_timezone(&Utc)).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde_json::json;

    use super::*;

    fn entry(n: u64) -> AuditEntry {
        AuditEntry {
            seq: 0,
            at: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, n as u32 % 60).unwrap(),
            event: "job.completed".into(),
            actor: AuditActor { user_id: "ada".into(), profiles: vec!["admin".into()] },
            resource: format!("jobs/job_{n}"),
            action: "complete".into(),
            outcome: AuditOutcome::Success,
            job: Some(AuditJob {
                job_id: format!("job_{n}"),
                job_name: "template".into(),
                attempt: 1,
                error: None,
                result_summary: Some("{\"ok\":true}".into()),
            }),
            metadata: json!({"n": n}),
            node_id: "node-1".into(),
        }
    }

    fn log(n: u64) -> Vec<StoredEntry> {
        chain(0, GENESIS, (1..=n).map(entry).collect())
    }

    fn is_valid(result: &Verification) -> bool {
        matches!(result, Verification::Valid { .. })
    }

    #[test]
    fn a_chain_verifies_with_its_count_and_head() {
        let stored = log(5);
        let head = Checkpoint { seq: 5, hash: stored[4].hash.clone() };
        assert_eq!(
            verify(stored.clone(), None, &[]),
            Verification::Valid { count: 5, head: Some(head.clone()) }
        );
        // Appending continues the same chain.
        let more = chain(5, &head.hash, vec![entry(6)]);
        let all: Vec<StoredEntry> = stored.into_iter().chain(more).collect();
        assert!(matches!(verify(all, None, &[head]), Verification::Valid { count: 6, .. }));
        assert_eq!(verify(Vec::new(), None, &[]), Verification::Valid { count: 0, head: None });
    }

    #[test]
    fn every_single_byte_change_is_detected() {
        let stored = log(3);
        for (index, original) in stored.iter().enumerate() {
            for position in 0..original.bytes.len() + original.hash.len() {
                for flip in [0x01u8, 0x80] {
                    let mut tampered = stored.clone();
                    let target = &mut tampered[index];
                    if position < target.bytes.len() {
                        target.bytes[position] ^= flip;
                    } else {
                        let mut hash = target.hash.clone().into_bytes();
                        hash[position - target.bytes.len()] ^= flip;
                        target.hash = String::from_utf8_lossy(&hash).into_owned();
                    }
                    match verify(tampered, None, &[]) {
                        Verification::Broken { seq, .. } => assert_eq!(seq, original.seq),
                        valid => {
                            panic!("entry {} byte {position} ^ {flip:#x} undetected: {valid:?}", original.seq)
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn deletion_reordering_insertion_and_truncation_are_detected() {
        let stored = log(4);
        let mut deleted = stored.clone();
        deleted.remove(1);
        assert!(matches!(verify(deleted, None, &[]), Verification::Broken { seq: 2, .. }));
        let mut swapped = stored.clone();
        swapped.swap(1, 2);
        assert!(matches!(verify(swapped, None, &[]), Verification::Broken { seq: 2, .. }));
        // A forged entry re-chained from the start still fails the checkpoint.
        let forged = chain(0, GENESIS, vec![entry(1), entry(99)]);
        let checkpoint = Checkpoint { seq: 2, hash: stored[1].hash.clone() };
        let result = verify(forged, None, std::slice::from_ref(&checkpoint));
        assert!(
            matches!(&result, Verification::Broken { seq: 2, reason } if reason.contains("checkpoint")),
            "{result:?}"
        );
        let truncated = stored[..2].to_vec();
        let at_four = Checkpoint { seq: 4, hash: stored[3].hash.clone() };
        let result = verify(truncated.clone(), None, &[at_four]);
        assert!(
            matches!(&result, Verification::Broken { reason, .. } if reason.contains("truncated")),
            "{result:?}"
        );
        assert!(is_valid(&verify(truncated, None, &[])), "without a checkpoint a prefix is a valid log");
    }

    #[test]
    fn a_removed_start_is_a_cut_unless_retention_is_on_and_checkpoints_agree() {
        let stored = log(5);
        let start = Checkpoint { seq: 2, hash: stored[1].hash.clone() };
        let broken = |v: Option<Verification>| match v {
            Some(Verification::Broken { seq, reason }) => (seq, reason),
            other => panic!("{other:?}"),
        };
        let (seq, reason) = broken(check_pruned_start(&start, &[], false));
        assert_eq!(seq, 1);
        assert!(reason.contains("retention is off"), "{reason}");
        assert!(check_pruned_start(&start, &[], true).is_none());
        let inside = Checkpoint { seq: 1, hash: stored[0].hash.clone() };
        let (seq, reason) = broken(check_pruned_start(&start, std::slice::from_ref(&inside), true));
        assert_eq!(seq, 1);
        assert!(reason.contains("inside the removed start"), "{reason}");
        assert!(
            check_pruned_start(&start, &[inside, start.clone()], true).is_none(),
            "the prune acknowledged"
        );
        let forged = Checkpoint { seq: 2, hash: GENESIS.into() };
        assert!(broken(check_pruned_start(&start, &[forged], true)).1.contains("differs"));
    }

    #[test]
    fn a_pruned_prefix_verifies_from_its_checkpoint() {
        let stored = log(5);
        let kept = Checkpoint { seq: 2, hash: stored[1].hash.clone() };
        let rest = stored[2..].to_vec();
        assert!(matches!(verify(rest.clone(), Some(&kept), &[]), Verification::Valid { count: 3, .. }));
        let wrong = Checkpoint { seq: 2, hash: GENESIS.into() };
        assert!(matches!(verify(rest, Some(&wrong), &[]), Verification::Broken { seq: 3, .. }));
    }
}
