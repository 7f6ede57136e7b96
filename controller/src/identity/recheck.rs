//! Asking the provider again about people who signed in: with the refresh
//! token (OpenID) or access token (GitHub) kept at their sign-in, every
//! `recheck-every`. Groups that moved follow; a person the provider no
//! longer knows is disabled and their devices cut off everywhere; an
//! outage cuts nobody off (asked again at the next check). Runs on a
//! controller with sign-in, never on a relay-only instance.

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use super::{Recheck, SignIn};
use crate::hub::Hub;
use crate::store::{Person, User};

/// How often due people are looked for: a quarter of the interval, from a
/// second to a minute.
pub fn tick(every: Duration) -> Duration {
    (every / 4).clamp(Duration::from_secs(1), Duration::from_secs(60))
}

/// Runs until the task is aborted.
pub async fn run(hub: Arc<Hub>, sign_in: Arc<SignIn>) {
    let every = sign_in.settings.recheck_every;
    let mut tick = tokio::time::interval(tick(every));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let due_before = OffsetDateTime::now_utc().unix_timestamp()
            - i64::try_from(every.as_secs()).unwrap_or(i64::MAX);
        let due = match hub.store().users_to_recheck(due_before).await {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %e, "reading who to check at the provider failed; retrying");
                continue;
            }
        };
        for (user, token) in due {
            check(&hub, &sign_in, &user, &token).await;
        }
    }
}

/// One person: what the provider says, and what the store makes of it.
async fn check(hub: &Hub, sign_in: &SignIn, user: &User, token: &str) {
    let store = hub.store();
    // A person from another provider (the configuration changed) cannot
    // be asked here; they stay as they are until they sign in again.
    if user.issuer != sign_in.provider.issuer() {
        if let Err(e) = store.keep_provider_token(&user.id, None).await {
            tracing::warn!(user = %user.id, error = %e, "forgetting a token failed");
        }
        return;
    }
    let changed = match sign_in.provider.recheck(&user.subject, token).await {
        Recheck::Still { person, kept } => {
            let person = person.unwrap_or_else(|| Person {
                issuer: user.issuer.clone(),
                subject: user.subject.clone(),
                email: user.email.clone(),
                name: user.name.clone(),
                groups: user.groups.clone(),
            });
            store.recheck_passed(user, &person, kept.as_deref()).await
        }
        Recheck::Gone { reason } => {
            tracing::warn!(user = %user.id, email = %user.email, %reason, "the provider no longer knows this person: disabled");
            store.removed_at_provider(user, &reason).await
        }
        Recheck::Unknown { error } => {
            tracing::warn!(user = %user.id, %error, "could not check this person at the provider; asking again at the next check");
            // Marks the check done, so the provider is not asked every tick.
            store
                .keep_provider_token(&user.id, Some(token))
                .await
                .map(|()| Vec::new())
        }
    };
    if let Err(e) = changed {
        tracing::warn!(user = %user.id, error = %e, "recording a check at the provider failed")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tick_is_a_quarter_of_the_interval_within_bounds() {
        assert_eq!(tick(Duration::from_secs(3600)), Duration::from_secs(60));
        assert_eq!(tick(Duration::from_secs(8)), Duration::from_secs(2));
        assert_eq!(tick(Duration::from_secs(1)), Duration::from_secs(1));
    }
}
