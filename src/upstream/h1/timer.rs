//! The deadline of an exchange, kept registered with the runtime across the exchanges of one
//! connection.
//!
//! Every try sets a deadline a request timeout (seconds) from now: always later than the last
//! one. Moving a registered tokio timer costs a clock conversion and an atomic update (~160
//! instructions of a proxied GET, callgrind), so a later deadline is only remembered: the timer
//! stays where it was and, when it fires early, moves to the real deadline then. A connection
//! pays one move per request timeout instead of one per request. An earlier deadline (a shorter
//! per-try timeout, a client's `grpc-timeout`) moves the timer at once.

use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::time::{Instant, Sleep};

/// A timer that fires at or after [`TryTimer::set`]'s deadline, never before it.
pub struct TryTimer {
    /// Registered at or before `deadline`.
    sleep: Pin<Box<Sleep>>,
    /// When the exchange in flight runs out of time.
    deadline: Instant,
}

impl TryTimer {
    /// A timer for `deadline`.
    pub fn new(deadline: Instant) -> Self {
        Self {
            sleep: Box::pin(tokio::time::sleep_until(deadline)),
            deadline,
        }
    }

    /// Sets the deadline of the next exchange.
    pub fn set(&mut self, deadline: Instant) {
        if deadline < self.sleep.deadline() {
            self.sleep.as_mut().reset(deadline);
        }
        self.deadline = deadline;
    }

    /// Whether the deadline has passed; when not, the task is woken when the timer fires.
    pub fn poll_expired(&mut self, cx: &mut Context<'_>) -> bool {
        loop {
            if self.sleep.as_mut().poll(cx) == Poll::Pending {
                return false;
            }
            // The timer fired at its own deadline: the exchange's may be later.
            if self.sleep.deadline() >= self.deadline {
                return true;
            }
            self.sleep.as_mut().reset(self.deadline);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;
    use std::time::Duration;

    use super::*;

    async fn expired(timer: &mut TryTimer) {
        poll_fn(|cx| {
            if timer.poll_expired(cx) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }

    #[tokio::test]
    async fn a_later_deadline_is_kept_even_when_the_first_one_fires() {
        let start = Instant::now();
        let mut timer = TryTimer::new(start + Duration::from_millis(10));
        let later = start + Duration::from_millis(60);
        timer.set(later);
        expired(&mut timer).await;
        assert!(
            Instant::now() >= later,
            "fired before the deadline it was given"
        );
    }

    #[tokio::test]
    async fn an_earlier_deadline_moves_the_timer() {
        let start = Instant::now();
        let mut timer = TryTimer::new(start + Duration::from_secs(3600));
        let sooner = start + Duration::from_millis(20);
        timer.set(sooner);
        // Would hang (and the test time out) if the hour-long registration were kept.
        expired(&mut timer).await;
        assert!(Instant::now() >= sooner);
    }

    #[tokio::test]
    async fn a_deadline_not_reached_is_pending() {
        let mut timer = TryTimer::new(Instant::now() + Duration::from_secs(3600));
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(!timer.poll_expired(&mut cx));
        timer.set(Instant::now() + Duration::from_secs(7200));
        assert!(!timer.poll_expired(&mut cx));
    }
}
