//! Asking a run to stop (SIGINT, SIGTERM, `--deadline`), even in the middle
//! of a cloud call that never answers.
//!
//! No call starts once a stop is requested, and a call in flight is
//! abandoned rather than awaited: its journal intent stays open, the state
//! keeps what the run recorded before it, and the next run's refresh
//! reconciles the call from what the clouds report (an abandoned create that
//! did launch nodes left them tagged, so they are adopted, never orphaned).

use tokio::sync::watch;

/// A stop request, shared by whoever asks (a signal handler, a deadline) and the run.
#[derive(Debug)]
pub struct Stop {
    requested: watch::Sender<bool>,
}

impl Default for Stop {
    fn default() -> Stop {
        Stop { requested: watch::Sender::new(false) }
    }
}

impl Stop {
    pub fn request(&self) {
        self.requested.send_replace(true);
    }

    pub fn is_requested(&self) -> bool {
        *self.requested.borrow()
    }

    /// `work`, unless a stop is requested first (or already was): then
    /// `None`, and `work` is dropped wherever it was.
    pub async fn unless_requested<T>(&self, work: impl Future<Output = T>) -> Option<T> {
        let mut requested = self.requested.subscribe();
        tokio::select! {
            biased;
            _ = requested.wait_for(|stop| *stop) => None,
            out = work => Some(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stop_abandons_the_work_in_flight_and_any_work_after_it() {
        let stop = Stop::default();
        assert_eq!(stop.unless_requested(async { 1 }).await, Some(1));
        let hung = stop.unless_requested(std::future::pending::<()>());
        let (abandoned, ()) = tokio::join!(hung, async { stop.request() });
        assert_eq!(abandoned, None);
        assert!(stop.is_requested());
        assert_eq!(stop.unless_requested(async { 2 }).await, None, "nothing starts after a stop");
    }
}
