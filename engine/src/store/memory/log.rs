//! The in-memory store's append-only lists: its outboxes and audit log.

use std::collections::VecDeque;

/// Entries per block: enough that walking the blocks costs little, few
/// enough that a new block is a small allocation.
const BLOCK: usize = 4096;

/// An append-only list kept in blocks. Growing it never moves what it
/// holds: as one vector, each reallocation of a long outbox or audit log
/// copied all of it while the store's lock was held, stalling every
/// worker. A prefix can be dropped (audit retention).
pub(super) struct Log<T> {
    blocks: VecDeque<Vec<T>>,
    len: usize,
}

impl<T> Default for Log<T> {
    fn default() -> Self {
        Self { blocks: VecDeque::new(), len: 0 }
    }
}

impl<T> Log<T> {
    /// How many entries it holds.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn push(&mut self, value: T) {
        match self.blocks.back_mut() {
            Some(block) if block.len() < BLOCK => block.push(value),
            _ => {
                let mut block = Vec::with_capacity(BLOCK);
                block.push(value);
                self.blocks.push_back(block);
            }
        }
        self.len += 1;
    }

    /// The entries from position `start` on.
    pub(super) fn iter_from(&self, mut start: usize) -> impl Iterator<Item = &T> {
        let mut skipped = 0;
        for block in &self.blocks {
            if start < block.len() {
                break;
            }
            start -= block.len();
            skipped += 1;
        }
        self.blocks
            .iter()
            .skip(skipped)
            .enumerate()
            .flat_map(move |(i, block)| &block[if i == 0 { start } else { 0 }..])
    }

    /// How many entries, from the first, satisfy `pred` (which must hold
    /// for a prefix only, as for [`slice::partition_point`]).
    pub(super) fn partition_point(&self, pred: impl Fn(&T) -> bool) -> usize {
        let mut count = 0;
        for block in &self.blocks {
            let within = block.partition_point(&pred);
            count += within;
            if within < block.len() {
                break;
            }
        }
        count
    }

    /// Drops the first `count` entries.
    pub(super) fn drop_front(&mut self, mut count: usize) {
        self.len -= count.min(self.len);
        while count > 0 {
            let Some(front) = self.blocks.front_mut() else { break };
            if front.len() <= count {
                count -= front.len();
                self.blocks.pop_front();
            } else {
                front.drain(..count);
                count = 0;
            }
        }
    }
}

impl<T> Extend<T> for Log<T> {
    fn extend<I: IntoIterator<Item = T>>(&mut self, values: I) {
        for value in values {
            self.push(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ranges_and_drops_prefixes_across_blocks() {
        let mut log = Log::default();
        log.extend(0..3 * BLOCK + 10);
        assert_eq!(log.len(), 3 * BLOCK + 10);
        let from = |log: &Log<usize>, start| log.iter_from(start).copied().take(3).collect::<Vec<_>>();
        assert_eq!(from(&log, 0), [0, 1, 2]);
        assert_eq!(from(&log, BLOCK - 1), [BLOCK - 1, BLOCK, BLOCK + 1]);
        assert_eq!(from(&log, 3 * BLOCK + 9), [3 * BLOCK + 9]);
        assert!(from(&log, 3 * BLOCK + 10).is_empty());
        assert_eq!(log.partition_point(|&n| n < 2 * BLOCK + 5), 2 * BLOCK + 5);

        log.drop_front(BLOCK + 7);
        assert_eq!(log.len(), 2 * BLOCK + 3);
        assert_eq!(from(&log, 0), [BLOCK + 7, BLOCK + 8, BLOCK + 9]);
        assert_eq!(log.partition_point(|&n| n < 2 * BLOCK), BLOCK - 7);
        assert_eq!(log.iter_from(0).count(), log.len());
        log.drop_front(log.len() + 1);
        assert_eq!((log.len(), log.iter_from(0).next()), (0, None));
    }
}
