//! A bounded, sharded cache of answers keyed by (name, type, class, DO, CD). Entries expire
//! with the smallest TTL in the answer; on a hit the remaining TTL is what the client sees.

use std::collections::HashMap;
use std::hash::BuildHasher;

use foldhash::fast::RandomState;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::wire::Answer;

const SHARDS: usize = 16;
/// Larger answers are not cached, so memory stays below `capacity` x 4 KiB (plus overhead).
const MAX_ENTRY_BYTES: usize = 4096;

struct Entry {
    answer: Arc<Answer>,
    created: Instant,
    expires: Instant,
}

struct Shard {
    map: HashMap<Box<[u8]>, Entry>,
    last_sweep: Option<Instant>,
}

/// The answer cache. With a capacity of 0 it stores nothing.
pub(crate) struct Cache {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
    hasher: RandomState,
}

/// A cache hit: the answer and how many seconds it has aged.
pub(crate) struct Hit {
    pub(crate) answer: Arc<Answer>,
    pub(crate) elapsed: u32,
}

impl Cache {
    pub(crate) fn new(capacity: usize) -> Self {
        let per_shard = capacity.div_ceil(SHARDS);
        let shards = (0..SHARDS)
            .map(|_| {
                Mutex::new(Shard {
                    map: HashMap::with_capacity(per_shard.min(4096)),
                    last_sweep: None,
                })
            })
            .collect();
        Self {
            shards,
            per_shard,
            hasher: RandomState::default(),
        }
    }

    fn shard(&self, key: &[u8]) -> &Mutex<Shard> {
        let h = self.hasher.hash_one(key) as usize;
        &self.shards[h % SHARDS]
    }

    pub(crate) fn get(&self, key: &[u8], now: Instant) -> Option<Hit> {
        if self.per_shard == 0 {
            return None;
        }
        let mut s = self.shard(key).lock().unwrap_or_else(|p| p.into_inner());
        let e = s.map.get(key)?;
        if e.expires <= now {
            s.map.remove(key);
            return None;
        }
        let elapsed = now.saturating_duration_since(e.created).as_secs();
        Some(Hit {
            answer: e.answer.clone(),
            elapsed: u32::try_from(elapsed).unwrap_or(u32::MAX),
        })
    }

    pub(crate) fn insert(&self, key: &[u8], answer: Arc<Answer>, now: Instant) {
        let Some(ttl) = answer.cache_ttl else { return };
        if self.per_shard == 0 || ttl == 0 || answer.wire.len() > MAX_ENTRY_BYTES {
            return;
        }
        let mut s = self.shard(key).lock().unwrap_or_else(|p| p.into_inner());
        if s.map.len() >= self.per_shard && !s.map.contains_key(key) {
            // Drop what has expired (at most once a second: it walks the shard); if that
            // frees nothing, drop an arbitrary entry.
            if s.last_sweep
                .is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(1))
            {
                s.map.retain(|_, e| e.expires > now);
                s.last_sweep = Some(now);
            }
            if s.map.len() >= self.per_shard {
                let victim = s.map.keys().next().cloned();
                if let Some(k) = victim {
                    s.map.remove(&k);
                }
            }
        }
        s.map.insert(
            key.into(),
            Entry {
                answer,
                created: now,
                expires: now + Duration::from_secs(u64::from(ttl)),
            },
        );
    }

    /// Number of entries (including expired ones not yet dropped).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map(|s| s.map.len()).unwrap_or(0))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns64::wire::AnswerKind;

    fn answer(ttl: Option<u32>) -> Arc<Answer> {
        Arc::new(Answer {
            wire: Box::new([0; 12]),
            question_end: 12,
            ttl_offsets: Box::new([]),
            cache_ttl: ttl,
            kind: AnswerKind::Plain,
        })
    }

    #[test]
    fn bounded_and_expiring() {
        let c = Cache::new(32);
        let now = Instant::now();
        for i in 0..1000u32 {
            c.insert(&i.to_be_bytes(), answer(Some(60)), now);
        }
        assert!(c.len() <= 32, "{}", c.len());
        c.insert(b"k", answer(Some(10)), now);
        let hit = c.get(b"k", now + Duration::from_secs(3)).expect("hit");
        assert_eq!(hit.elapsed, 3);
        assert!(c.get(b"k", now + Duration::from_secs(10)).is_none());
        c.insert(b"n", answer(None), now);
        assert!(c.get(b"n", now).is_none());
        let off = Cache::new(0);
        off.insert(b"k", answer(Some(10)), now);
        assert!(off.get(b"k", now).is_none());
    }
}
