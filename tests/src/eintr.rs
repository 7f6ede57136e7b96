//! Blocking socket calls that a signal may interrupt. A socket with a
//! read timeout returns `Interrupted` instead of restarting when the
//! process is stopped and continued, or a handler runs; std does not retry
//! `recv_from` or `read` by itself, so the lab's callers go through here.

use std::io;

/// Calls `op` again for as long as it fails with `Interrupted`.
pub fn restart<T>(mut op: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match op() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_only_interruptions() {
        let mut calls = 0;
        let got = restart(|| {
            calls += 1;
            if calls < 3 {
                Err(io::Error::from(io::ErrorKind::Interrupted))
            } else {
                Ok(calls)
            }
        });
        assert_eq!(got.unwrap(), 3);
        let mut calls = 0;
        let err = restart::<()>(|| {
            calls += 1;
            Err(io::Error::from(io::ErrorKind::TimedOut))
        });
        assert_eq!(err.unwrap_err().kind(), io::ErrorKind::TimedOut);
        assert_eq!(calls, 1);
    }
}
