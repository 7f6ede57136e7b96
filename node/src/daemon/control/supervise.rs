//! A controller connection's task under supervision. The task keeps the
//! connection up until its handle is dropped, so any other end is a death:
//! it is reported to the daemon (`status` shows it, `--check` fails on it)
//! and a new run is started with the same backoff and bound as the agent's
//! other tasks. The new run carries on from what the dead one held (its
//! session, its queues), so the networks and their data planes see a
//! reconnection, not a loss.

use std::future::Future;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::super::supervisor::{join_error_message, Restarts};
use super::ControlEvent;

/// Runs `run()` again each time a run dies, until one ends (its handle was
/// dropped) or restarts run out. Dropping this future stops the run.
pub(super) async fn supervise<F, Fut>(
    controller: String,
    events: mpsc::UnboundedSender<ControlEvent>,
    mut run: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut restarts = Restarts::default();
    // Held here so that dropping this future aborts the run.
    let mut current = JoinSet::new();
    loop {
        current.spawn(run());
        let error = match current.join_next().await {
            None | Some(Ok(())) => return,
            Some(Err(e)) => join_error_message(e),
        };
        let restart_at = restarts.died(error.clone(), Instant::now());
        match restart_at {
            Some(at) => {
                tracing::error!(%controller, %error, restart_in = ?at.saturating_duration_since(Instant::now()), "controller connection task died: starting it again");
            }
            None => {
                tracing::error!(%controller, %error, deaths = restarts.deaths(), "controller connection task keeps dying: not started again");
            }
        }
        let _ = events.send(ControlEvent::TaskDied {
            controller: controller.clone(),
            error,
            deaths: restarts.deaths(),
            gave_up: restart_at.is_none(),
        });
        let Some(at) = restart_at else {
            return;
        };
        tokio::time::sleep_until(at).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    use tokio::sync::Mutex;

    use super::super::super::supervisor::{FIRST_BACKOFF, MAX_RESTARTS};
    use super::*;

    fn died(event: ControlEvent) -> (String, u32, bool) {
        match event {
            ControlEvent::TaskDied {
                error,
                deaths,
                gave_up,
                ..
            } => (error, deaths, gave_up),
            other => panic!("not a death: {other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_that_panics_is_reported_and_the_next_carries_on_from_its_state() {
        let (events, mut rx) = mpsc::unbounded_channel();
        // What runs hold between them, as `Parts` is.
        let held = Arc::new(Mutex::new(Vec::<u32>::new()));
        let runs = Arc::new(AtomicU32::new(0));
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let (h, r) = (held.clone(), runs.clone());
        let task = tokio::spawn(supervise("c:7443".into(), events, move || {
            let (held, runs, mut stop) = (h.clone(), r.clone(), stop_rx.clone());
            async move {
                let mut held = held.lock().await;
                let run = runs.fetch_add(1, Ordering::SeqCst);
                held.push(run);
                if run < 2 {
                    panic!("run {run} broke");
                }
                // The handle is dropped: the run ends of itself.
                let _ = stop.wait_for(|s| *s).await;
            }
        }));
        let start = Instant::now();
        assert_eq!(
            died(rx.recv().await.unwrap()),
            ("panicked: run 0 broke".into(), 1, false)
        );
        assert_eq!(
            died(rx.recv().await.unwrap()),
            ("panicked: run 1 broke".into(), 2, false)
        );
        // Restarted after 1 s, then 2 s.
        assert!(Instant::now() - start >= FIRST_BACKOFF);
        tokio::time::sleep(FIRST_BACKOFF * 4).await;
        assert_eq!(runs.load(Ordering::SeqCst), 3, "the third run lives");
        stop_tx.send(true).unwrap();
        task.await.unwrap();
        assert_eq!(
            *held.lock().await,
            vec![0, 1, 2],
            "each run saw the last one's state"
        );
        assert!(rx.recv().await.is_none(), "an ended run is no death");
    }

    #[tokio::test(start_paused = true)]
    async fn restarts_run_out_and_the_task_ends() {
        let (events, mut rx) = mpsc::unbounded_channel();
        supervise("c:7443".into(), events, || async { panic!("always") }).await;
        let mut last = None;
        while let Ok(event) = rx.try_recv() {
            last = Some(died(event));
        }
        let (error, deaths, gave_up) = last.unwrap();
        assert_eq!(error, "panicked: always");
        assert_eq!(deaths, MAX_RESTARTS + 1);
        assert!(gave_up);
    }

    #[tokio::test(start_paused = true)]
    async fn dropping_the_supervisor_stops_the_run() {
        let (events, _rx) = mpsc::unbounded_channel();
        let alive = Arc::new(());
        let probe = alive.clone();
        let task = tokio::spawn(supervise("c:7443".into(), events, move || {
            let alive = probe.clone();
            async move {
                let _alive = alive;
                std::future::pending::<()>().await;
            }
        }));
        tokio::time::sleep(FIRST_BACKOFF).await;
        assert_eq!(Arc::strong_count(&alive), 3, "the run holds its clone");
        task.abort();
        let _ = task.await;
        tokio::time::sleep(FIRST_BACKOFF).await;
        assert_eq!(Arc::strong_count(&alive), 1, "the run was stopped with it");
    }
}
