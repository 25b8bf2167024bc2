//! [`LogLimit`]: at most one log line per key (a peer address) per period, in bounded memory.
//! What comes from outside can be refused many times a second; the log says so once a minute.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Keys remembered at most; when full, entries older than the period are forgotten, and a key
/// that still finds no room is not logged until one is.
const MAX_KEYS: usize = 1024;

/// Remembers when each key was last logged.
#[derive(Debug)]
pub(crate) struct LogLimit<K> {
    every: Duration,
    last: HashMap<K, Instant>,
}

impl<K: Hash + Eq> LogLimit<K> {
    /// At most one line per key per `every`.
    pub(crate) fn new(every: Duration) -> LogLimit<K> {
        LogLimit {
            every,
            last: HashMap::new(),
        }
    }

    /// Whether a line about `key` may be logged now (and if so, remembers that it was).
    pub(crate) fn due(&mut self, key: K) -> bool {
        let now = Instant::now();
        if self.last.len() >= MAX_KEYS && !self.last.contains_key(&key) {
            let every = self.every;
            self.last.retain(|_, at| now.duration_since(*at) < every);
            if self.last.len() >= MAX_KEYS {
                return false;
            }
        }
        match self.last.get_mut(&key) {
            Some(at) if now.duration_since(*at) < self.every => false,
            Some(at) => {
                *at = now;
                true
            }
            None => {
                self.last.insert(key, now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_key_per_period_in_bounded_memory() {
        let mut limit = LogLimit::new(Duration::from_secs(60));
        assert!(limit.due("a"));
        assert!(!limit.due("a"));
        assert!(limit.due("b"));
        let mut limit = LogLimit::new(Duration::from_secs(60));
        for n in 0..MAX_KEYS {
            assert!(limit.due(n));
        }
        assert!(!limit.due(MAX_KEYS), "full: not logged");
        assert_eq!(limit.last.len(), MAX_KEYS);
        let mut limit = LogLimit::new(Duration::ZERO);
        assert!(limit.due(1));
        assert!(limit.due(1));
    }
}
