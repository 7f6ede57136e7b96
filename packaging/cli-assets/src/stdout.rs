//! Command output on stdout that survives a reader who stops early
//! (`warren-controller member list | head -1`): `println!` panics when the
//! pipe is closed, [`outln!`](crate::outln) and [`out!`](crate::out) end the
//! command quietly instead.
//!
//! Rust ignores SIGPIPE, so a write to a closed pipe is an `EPIPE` error
//! rather than a killed process. Nothing here changes that: the daemons
//! (`warren daemon`, `warren-controller serve`) write to sockets and must
//! keep treating a peer that went away as an error, never a signal.

use std::fmt;
use std::io::{self, Write as _};

/// `println!` for a command's output; see the [module](crate::stdout).
#[macro_export]
macro_rules! outln {
    () => {
        $crate::stdout::write(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::stdout::write_line(format_args!($($arg)*))
    };
}

/// `print!` for a command's output; see the [module](crate::stdout).
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::stdout::write(format_args!($($arg)*))
    };
}

/// `eprintln!` for a command's messages: a stderr that is gone (closed,
/// or a pipe whose reader left) loses the message instead of panicking.
#[macro_export]
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::stdout::write_err_line(format_args!($($arg)*))
    };
}

/// Writes `args` and a newline to stderr, in one piece, if it can.
pub fn write_err_line(args: fmt::Arguments<'_>) {
    let mut err = io::stderr().lock();
    let _ = err.write_fmt(args).and_then(|()| err.write_all(b"\n"));
}

/// Writes `args` and a newline to stdout, in one piece, or ends the process
/// as [`ended`] says.
pub fn write_line(args: fmt::Arguments<'_>) {
    let mut out = io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.write_all(b"\n")) {
        drop(out);
        ended(&e)
    }
}

/// Writes `args` to stdout, or ends the process as [`ended`] says.
pub fn write(args: fmt::Arguments<'_>) {
    let mut out = io::stdout().lock();
    if let Err(e) = out.write_fmt(args) {
        drop(out);
        ended(&e)
    }
}

/// Stdout failed: a reader that went away is no failure of the command (it
/// got what it wanted), so that exits 0 without a word, like a pipeline's
/// reader expects; any other error (a full disk) says so and exits 1.
fn ended(error: &io::Error) -> ! {
    if error.kind() == io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    // stderr may be gone too; nothing more can be said then.
    let _ = writeln!(io::stderr(), "error: writing the output: {error}");
    std::process::exit(1)
}
