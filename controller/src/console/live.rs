//! `/console/events`: one server-sent event (`change`) each time a network
//! changes (members, presence, routes, policy, grants) or a member's
//! reported paths change, so pages refresh themselves. The event names no network: a page fetches itself again
//! and sees only what its viewer may. A stream ends after a while and the
//! browser opens a new one, which checks the session again.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

use super::session::Viewer;
use super::ConsoleState;

/// Streams open at once; past it, 503 (the browser retries).
pub const MAX_STREAMS: usize = 64;
/// How long one stream lasts before the browser reconnects.
const STREAM_FOR: Duration = Duration::from_secs(10 * 60);

pub async fn events(State(state): State<ConsoleState>, _viewer: Viewer) -> Response {
    let Ok(permit) = state.live.clone().try_acquire_owned() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "too many live pages").into_response();
    };
    let changes = (state.hub.subscribe(), state.hub.subscribe_live());
    let until = Instant::now() + STREAM_FOR;
    // The first event says the stream is up (tests wait for it).
    let first = Event::default().event("ready").data("ready");
    let stream = futures_util::stream::unfold(
        (Some(first), changes, permit),
        move |(first, mut changes, permit)| async move {
            if let Some(first) = first {
                return Some((Ok::<_, Infallible>(first), (None, changes, permit)));
            }
            let next = async {
                tokio::select! {
                    r = changes.0.recv() => r,
                    r = changes.1.recv() => r,
                }
            };
            match tokio::time::timeout_at(until, next).await {
                Ok(Ok(_)) | Ok(Err(RecvError::Lagged(_))) => {
                    let event = Event::default().event("change").data("change");
                    Some((Ok(event), (None, changes, permit)))
                }
                Ok(Err(RecvError::Closed)) | Err(_) => None,
            }
        },
    );
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}
