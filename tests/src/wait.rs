//! Bounded polling: every wait in a suite has a deadline and, when it runs
//! out, says what it waited for and what it saw last.

use std::fmt::Display;
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{LabError, Result};

/// How often [`until`] looks again.
pub const POLL: Duration = Duration::from_millis(200);

/// What one look at the world found.
#[derive(Debug)]
pub enum Poll<T> {
    /// The condition holds; stop waiting.
    Ready(T),
    /// Not yet; the text describes what was seen (shown on timeout).
    Pending(String),
}

/// Calls `look` every [`POLL`] until it returns [`Poll::Ready`] or `within`
/// runs out. An error from `look` ends the wait at once.
pub fn until<T, F>(what: impl Display, within: Duration, mut look: F) -> Result<T>
where
    F: FnMut() -> Result<Poll<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        let seen = match look()? {
            Poll::Ready(value) => return Ok(value),
            Poll::Pending(seen) => seen,
        };
        if Instant::now() >= deadline {
            return Err(LabError::Timeout {
                what: format!("{what} (last seen: {seen})"),
                after: within,
            });
        }
        thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_value_or_times_out_with_the_last_sight() {
        let mut n = 0;
        let got = until("n to reach 3", Duration::from_secs(5), || {
            n += 1;
            Ok(if n >= 3 {
                Poll::Ready(n)
            } else {
                Poll::Pending(format!("n = {n}"))
            })
        });
        assert_eq!(got.ok(), Some(3));
        let err = until("never", Duration::from_millis(1), || {
            Ok(Poll::<()>::Pending("nothing".into()))
        })
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(err.contains("never (last seen: nothing)"), "{err}");
    }
}
