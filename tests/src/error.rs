//! The lab's error type: what went wrong while building or driving a lab.

use std::io;
use std::process::ExitStatus;
use std::time::Duration;

/// Everything a lab operation can fail with. Variants carry enough context to
/// diagnose a failure from the test output alone.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A command ran but exited unsuccessfully.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: ExitStatus,
        stderr: String,
    },

    /// A command could not be started at all (binary missing, ...).
    #[error("could not start `{command}`: {source}")]
    Spawn { command: String, source: io::Error },

    /// Some other I/O operation failed.
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },

    /// A bounded wait ran out.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout { what: String, after: Duration },

    /// A process the lab started exited while it was expected to run.
    #[error("{label} exited unexpectedly ({status}); stderr tail:\n{log}")]
    Exited {
        label: String,
        status: ExitStatus,
        log: String,
    },

    /// A tool printed something the lab could not make sense of.
    #[error("unexpected output from {what}: {detail}")]
    Output { what: String, detail: String },

    /// The lab was asked for something it cannot build.
    #[error("invalid lab request: {0}")]
    Invalid(String),

    /// Entering a network namespace failed.
    #[error("cannot enter network namespace {netns}: {source}")]
    Setns { netns: String, source: io::Error },

    /// A WebDriver command was answered with an error.
    #[error("WebDriver {command} failed: {error}: {message}")]
    WebDriver {
        command: String,
        error: String,
        message: String,
    },

    /// The OpenID provider's login page refused a sign-in; `message` is
    /// what the page said.
    #[error("signing in as {login:?} was refused: {message}")]
    SignInRefused { login: String, message: String },

    /// A thread running inside a network namespace panicked.
    #[error("thread inside network namespace {netns} panicked: {message}")]
    ThreadPanicked { netns: String, message: String },
}

impl LabError {
    /// Wraps an I/O error with what the lab was doing.
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        LabError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Shorthand used across the crate.
pub type Result<T, E = LabError> = std::result::Result<T, E>;
