//! Room for new clients when `max_connections` is reached: connections that have not sent a
//! single byte yet are closed, oldest first, so a flood of idle connections cannot lock real
//! clients out until `header_read_timeout` frees the slots (nginx drains its idle connections the
//! same way when it runs out). The ticket lives in the connection's [`IdleIo`], which already
//! watches its reads. A connection stops being reclaimable at its first byte, and one
//! younger than [`MIN_AGE`] is left alone: a real client's first bytes follow its handshake
//! within a round trip, and the newest connection at a full listener is usually exactly that.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::Context;
use std::time::{Duration, Instant};

use futures_util::task::AtomicWaker;

#[cfg(doc)]
use super::idle::IdleIo;

/// How many silent connections one full accept loop closes at a time.
const BATCH: usize = 32;

/// How long a connection may stay silent before it can be reclaimed; also how often a full
/// accept loop looks again.
pub const MIN_AGE: Duration = Duration::from_secs(1);

/// A silent connection's handle: set `reclaimed` and wake it, and it ends.
pub struct Ticket {
    born: Instant,
    reclaimed: AtomicBool,
    waker: AtomicWaker,
}

/// The silent connections of one listener, oldest first.
#[derive(Default)]
pub struct Reclaimer {
    silent: Mutex<VecDeque<Weak<Ticket>>>,
}

impl Reclaimer {
    /// A ticket for a newly accepted connection.
    pub fn register(&self) -> Arc<Ticket> {
        let ticket = Arc::new(Ticket {
            born: Instant::now(),
            reclaimed: AtomicBool::new(false),
            waker: AtomicWaker::new(),
        });
        if let Ok(mut silent) = self.silent.lock() {
            // Tickets of connections that spoke or ended are dead; drop them before the list
            // outgrows the live ones.
            if silent.len() >= 64 && silent.len().is_power_of_two() {
                silent.retain(|t| t.strong_count() > 0);
            }
            silent.push_back(Arc::downgrade(&ticket));
        }
        ticket
    }

    /// Closes up to a batch of the oldest connections that have been silent for `min_age`;
    /// how many.
    pub fn reclaim(&self, now: Instant, min_age: Duration) -> usize {
        let Ok(mut silent) = self.silent.lock() else {
            return 0;
        };
        let mut closed = 0;
        while closed < BATCH {
            let Some(weak) = silent.front() else {
                break;
            };
            let Some(ticket) = weak.upgrade() else {
                silent.pop_front();
                continue;
            };
            // Oldest first: once one is too young, so are all behind it.
            if now.saturating_duration_since(ticket.born) < min_age {
                break;
            }
            silent.pop_front();
            ticket.reclaimed.store(true, Ordering::Release);
            ticket.waker.wake();
            closed += 1;
        }
        closed
    }
}

impl Ticket {
    /// For the connection's read side, while it is still silent: `Some(error)` once reclaimed;
    /// otherwise registers the task so a reclaim wakes it.
    pub fn poll_reclaimed(&self, cx: &Context<'_>) -> Option<io::Error> {
        // Register before checking, so a reclaim between the two still wakes this task.
        self.waker.register(cx.waker());
        self.reclaimed.load(Ordering::Acquire).then(|| {
            io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "closed to make room: silent while max_connections was reached",
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_silent_tickets_are_reclaimed_and_spoken_ones_skipped() {
        let reclaimer = Reclaimer::default();
        let first = reclaimer.register();
        let spoke = reclaimer.register();
        drop(spoke); // its connection sent a byte (or ended)
        let third = reclaimer.register();
        let now = Instant::now();
        // Too young: nothing is closed.
        assert_eq!(reclaimer.reclaim(now, Duration::from_secs(3600)), 0);
        assert!(!first.reclaimed.load(Ordering::Acquire));
        let later = now + Duration::from_secs(2);
        assert_eq!(reclaimer.reclaim(later, Duration::from_secs(1)), 2);
        assert!(first.reclaimed.load(Ordering::Acquire));
        assert!(third.reclaimed.load(Ordering::Acquire));
        assert_eq!(reclaimer.reclaim(later, Duration::from_secs(1)), 0);
    }
}
