//! Exponential backoff with jitter, for reconnecting and retrying, and the warning that says
//! why (rate-limited, so a center that is down for a day does not fill the log).

use std::time::{Duration, Instant};

/// Delays that double from `initial` up to `max`; each is drawn uniformly from its upper
/// half ("equal jitter"), so a fleet that lost the center at the same moment does not come
/// back at the same moment.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max: max.max(initial),
            current: initial,
        }
    }

    /// The next delay.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.current;
        self.current = (self.current * 2).min(self.max);
        let half = ceiling / 2;
        let span = u64::try_from((ceiling - half).as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        half + Duration::from_micros(fleetcare_core::secret::random_u64() % span)
    }

    /// Back to the first delay (after a success).
    pub fn reset(&mut self) {
        self.current = self.initial;
    }
}

/// A warning about something that keeps failing: said (at `warn`) when its cause changes and
/// at most every `EVERY` while it stays the same (at `debug` in between), with the next try's
/// time; and once more, at `info`, when it works again.
#[derive(Debug, Clone)]
pub struct Complaint {
    what: &'static str,
    hint: Option<String>,
    last: Option<(String, Instant)>,
}

impl Complaint {
    pub const EVERY: Duration = Duration::from_secs(300);

    /// `what` failed ("reaching the center"); `hint` is added to every warning (a likely
    /// mistake in the config).
    pub fn new(what: &'static str, hint: Option<String>) -> Complaint {
        Complaint {
            what,
            hint,
            last: None,
        }
    }

    /// It failed with `cause`; the next try is in `retry_in`. Whether it was said at `warn`.
    pub fn failed(&mut self, cause: &str, retry_in: Duration) -> bool {
        let now = Instant::now();
        let say = match &self.last {
            Some((c, at)) => c != cause || now.duration_since(*at) >= Self::EVERY,
            None => true,
        };
        let retry_in = format!("{:.1}s", retry_in.as_secs_f64());
        if say {
            self.last = Some((cause.to_owned(), now));
            let hint = self.hint.as_deref().unwrap_or("");
            tracing::warn!(
                cause,
                retry_in,
                "{} failed; trying again{}",
                self.what,
                hint
            );
        } else {
            tracing::debug!(cause, retry_in, "{} failed again", self.what);
        }
        say
    }

    /// It worked (after failing, this is said).
    pub fn recovered(&mut self) {
        if self.last.take().is_some() {
            tracing::info!("{} works again", self.what);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_ceiling_with_jitter() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(1000));
        let delays: Vec<Duration> = (0..8).map(|_| b.next_delay()).collect();
        let ceilings = [100u64, 200, 400, 800, 1000, 1000, 1000, 1000];
        for (d, c) in delays.iter().zip(ceilings) {
            let c = Duration::from_millis(c);
            assert!(*d >= c / 2 && *d <= c, "{d:?} outside [{:?}, {c:?}]", c / 2);
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn a_complaint_is_said_when_its_cause_changes_not_on_every_retry() {
        let mut c = Complaint::new("reaching the center", None);
        let d = Duration::from_secs(1);
        assert!(c.failed("connection refused", d));
        assert!(!c.failed("connection refused", d));
        assert!(!c.failed("connection refused", d));
        assert!(c.failed("dns error: no such host", d));
        c.recovered();
        assert!(
            c.failed("dns error: no such host", d),
            "said again after it worked"
        );
    }
}
