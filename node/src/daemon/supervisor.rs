//! Supervision: every task of the agent is owned by someone who notices its
//! death. [`Restarts`] is the policy (backoff, bounded within a window) that
//! data planes and the agent's own tasks share; [`Supervisor`] owns the
//! agent's own long-lived tasks (the local API, the metrics endpoint).

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use tokio::task::{Id, JoinSet};
use tokio::time::Instant;
use warren_proto::local_api::{DataPlaneHealth, TaskFailure};

/// Deaths within [`WINDOW`] after which no restart is tried.
pub const MAX_RESTARTS: u32 = 5;
/// The first restart's delay; each further one doubles it, up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Deaths longer ago than this no longer count toward [`MAX_RESTARTS`].
pub const WINDOW: Duration = Duration::from_secs(600);

/// One task's deaths and the restart they call for.
#[derive(Debug, Default, Clone)]
pub struct Restarts {
    /// All deaths, for status.
    deaths: u32,
    /// Deaths within the window of the latest.
    recent: u32,
    last: Option<(Instant, String)>,
    /// When to restart, while a restart is due.
    restart_at: Option<Instant>,
    gave_up: bool,
}

impl Restarts {
    /// Records a death at `now`; when to restart, or `None` if restarts ran out.
    pub fn died(&mut self, error: String, now: Instant) -> Option<Instant> {
        if self
            .last
            .as_ref()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) > WINDOW)
        {
            self.recent = 0;
        }
        self.deaths += 1;
        self.recent += 1;
        self.last = Some((now, error));
        if self.recent > MAX_RESTARTS {
            self.gave_up = true;
            self.restart_at = None;
        } else {
            let backoff = FIRST_BACKOFF
                .saturating_mul(1 << (self.recent - 1).min(16))
                .min(MAX_BACKOFF);
            self.restart_at = Some(now + backoff);
        }
        self.restart_at
    }

    /// When the next restart is due, if one is.
    pub fn restart_at(&self) -> Option<Instant> {
        self.restart_at
    }

    /// Takes the restart due at `now`, if one is.
    pub fn take_due(&mut self, now: Instant) -> bool {
        if self.restart_at.is_some_and(|at| at <= now) {
            self.restart_at = None;
            return true;
        }
        false
    }

    pub fn gave_up(&self) -> bool {
        self.gave_up
    }

    pub fn deaths(&self) -> u32 {
        self.deaths
    }

    /// What `status` shows of a data plane; `None` while it never died.
    pub fn health(&self, now: Instant) -> Option<DataPlaneHealth> {
        let (at, error) = self.last.as_ref()?;
        Some(DataPlaneHealth {
            deaths: self.deaths,
            last_error: error.clone(),
            last_death_secs: now.saturating_duration_since(*at).as_secs(),
            // Rounded up: a restart due in 0.9 s is not due now.
            restart_in_secs: self
                .restart_at
                .map(|r| r.saturating_duration_since(now).as_millis().div_ceil(1000))
                .map(|secs| u64::try_from(secs).unwrap_or(u64::MAX)),
            gave_up: self.gave_up,
        })
    }
}

/// What a panic said, if it said it in a string.
pub fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(text) => *text,
        Err(payload) => payload
            .downcast_ref::<&str>()
            .map_or_else(|| "(no message)".to_owned(), |text| (*text).to_owned()),
    }
}

/// Why a task ended that did not return: `panicked: MESSAGE`, or how it
/// was cancelled.
pub fn join_error_message(error: tokio::task::JoinError) -> String {
    match error.try_into_panic() {
        Ok(payload) => format!("panicked: {}", panic_message(payload)),
        Err(error) => error.to_string(),
    }
}

/// The agent's own long-lived tasks, by name. Each is meant to run until
/// the agent stops, so any end is a death.
#[derive(Default)]
pub struct Supervisor {
    tasks: JoinSet<anyhow::Result<()>>,
    names: BTreeMap<Id, &'static str>,
    restarts: BTreeMap<&'static str, Restarts>,
    /// Deaths of tasks supervised elsewhere (a controller connection's),
    /// as last reported, with when.
    reported: BTreeMap<String, (Instant, TaskFailure)>,
}

/// A task that ended, and whether (when) to start it again.
#[derive(Debug)]
pub struct Death {
    pub task: &'static str,
    pub error: String,
    pub restart_at: Option<Instant>,
}

impl Supervisor {
    pub fn spawn(
        &mut self,
        task: &'static str,
        work: impl Future<Output = anyhow::Result<()>> + Send + 'static,
    ) {
        let handle = self.tasks.spawn(work);
        self.names.insert(handle.id(), task);
    }

    /// The next task to die; pending while none does (or none runs).
    pub async fn next_death(&mut self) -> Death {
        loop {
            let Some(joined) = self.tasks.join_next_with_id().await else {
                std::future::pending::<()>().await;
                continue;
            };
            let (id, error) = match joined {
                Ok((id, Ok(()))) => (id, "ended".to_owned()),
                Ok((id, Err(e))) => (id, format!("{e:#}")),
                Err(e) => (e.id(), join_error_message(e)),
            };
            let Some(task) = self.names.remove(&id) else {
                continue;
            };
            tracing::error!(task, %error, "agent task died");
            let restart_at = self
                .restarts
                .entry(task)
                .or_default()
                .died(error.clone(), Instant::now());
            return Death {
                task,
                error,
                restart_at,
            };
        }
    }

    /// A task supervised elsewhere died just now, `deaths` times so far.
    pub fn report(&mut self, task: String, error: String, deaths: u32, gave_up: bool) {
        let failure = TaskFailure {
            task: task.clone(),
            error,
            deaths,
            last_death_secs: 0,
            gave_up,
        };
        self.reported.insert(task, (Instant::now(), failure));
    }

    /// What `status` says of tasks that died.
    pub fn failures(&self) -> Vec<TaskFailure> {
        let now = Instant::now();
        let own = self.restarts.iter().filter_map(|(task, r)| {
            let health = r.health(now)?;
            Some(TaskFailure {
                task: (*task).to_owned(),
                error: health.last_error,
                deaths: health.deaths,
                last_death_secs: health.last_death_secs,
                gave_up: health.gave_up,
            })
        });
        let reported = self.reported.values().map(|(at, failure)| TaskFailure {
            last_death_secs: now.saturating_duration_since(*at).as_secs(),
            ..failure.clone()
        });
        own.chain(reported).collect()
    }

    /// Stops every task and waits until each has ended.
    pub async fn shutdown(&mut self) {
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        self.names.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_back_off_and_run_out_within_the_window() {
        let start = Instant::now();
        let mut r = Restarts::default();
        assert!(r.health(start).is_none());
        let mut delays = Vec::new();
        for _ in 0..MAX_RESTARTS {
            let at = r.died("boom".into(), start).unwrap();
            delays.push(at - start);
            assert!(!r.take_due(start));
            assert!(r.take_due(at));
        }
        assert_eq!(delays[0], FIRST_BACKOFF);
        assert_eq!(delays[1], FIRST_BACKOFF * 2);
        assert!(delays.iter().all(|d| *d <= MAX_BACKOFF));
        assert_eq!(r.died("boom".into(), start), None);
        assert!(r.gave_up());
        let health = r.health(start).unwrap();
        assert_eq!(health.deaths, MAX_RESTARTS + 1);
        assert!(health.gave_up && health.restart_in_secs.is_none());
    }

    #[test]
    fn deaths_outside_the_window_are_forgiven() {
        let start = Instant::now();
        let mut r = Restarts::default();
        for _ in 0..MAX_RESTARTS {
            r.died("boom".into(), start);
        }
        let later = start + WINDOW + Duration::from_secs(1);
        assert_eq!(r.died("again".into(), later), Some(later + FIRST_BACKOFF));
        assert_eq!(r.deaths(), MAX_RESTARTS + 1);
        assert_eq!(r.health(later).unwrap().last_error, "again");
    }

    #[tokio::test]
    async fn a_task_that_panics_or_ends_is_reported_by_name() {
        let mut s = Supervisor::default();
        s.spawn("local-api", async { panic!("boom") });
        let death = s.next_death().await;
        assert_eq!(death.task, "local-api");
        assert_eq!(death.error, "panicked: boom");
        assert!(death.restart_at.is_some());
        s.spawn("metrics", async { Err(anyhow::anyhow!("listener closed")) });
        let death = s.next_death().await;
        assert_eq!(
            (death.task, death.error.as_str()),
            ("metrics", "listener closed")
        );
        s.report("control c:7443".into(), "panicked: x".into(), 6, true);
        let failures = s.failures();
        assert_eq!(failures.len(), 3);
        assert_eq!(failures[0].task, "local-api");
        assert_eq!(failures[2].task, "control c:7443");
        assert!(failures[2].gave_up && failures[2].deaths == 6);
        s.spawn("forever", std::future::pending());
        s.shutdown().await;
    }
}
