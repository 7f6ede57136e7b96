//! The routes' lifecycle on a fake system: what a netmap installs, what
//! going down and shutting down remove, and the filter failing closed.

use std::sync::Arc;

use super::os::fake::FakeRoutes;
use super::plan::tests::{accepting, id, map, net, peer};
use super::settings::SettingsFile;
use super::*;
use warren_proto::local_api::EffectState;

async fn accepting_routes(dir: &Path, fake: &FakeRoutes) -> Routes {
    SettingsFile::new(dir).save(&accepting()).unwrap();
    Routes::start_on(dir, Arc::new(fake.clone())).await
}

fn controller() -> Vec<IpAddr> {
    vec!["192.0.2.10".parse().unwrap()]
}

#[tokio::test]
async fn an_accepted_route_is_installed_and_removed_with_its_network() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeRoutes::default();
    let mut routes = accepting_routes(dir.path(), &fake).await;
    assert!(
        fake.state().calls.is_empty(),
        "a clean start touches nothing"
    );
    let m = map(vec![peer(2, &["10.96.0.0/12"])], &[]);
    let engine = routes.engine_routes(&m, "warren0", &controller());
    assert_eq!(engine.values().next(), Some(&vec![net("10.96.0.0/12")]));

    routes.network_up(&m, "warren0", controller()).await;
    {
        let s = fake.state();
        assert_eq!(
            s.table.get(&net("10.96.0.0/12")).map(String::as_str),
            Some("warren0")
        );
        assert_eq!(s.rules.len(), 4, "{:?}", s.rules);
        assert!(s.filter.as_deref().is_some_and(|f| f.contains("warren0")));
    }
    assert!(dir.path().join("routes-installed.json").exists());
    assert_eq!(routes.effect(id()).state, EffectState::Applied);
    // The same map again: nothing to do.
    let calls = fake.state().calls.len();
    routes.network_up(&m, "warren0", controller()).await;
    assert_eq!(fake.state().calls.len(), calls);

    routes.network_down(id()).await;
    {
        let s = fake.state();
        assert!(s.table.is_empty() && s.rules.is_empty() && s.filter.is_none());
    }
    assert!(!dir.path().join("routes-installed.json").exists());
    assert_eq!(routes.effect(id()).state, EffectState::None);
}

#[tokio::test]
async fn a_refused_filter_withholds_every_route() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeRoutes::default();
    fake.state().refuse_filter = Some("no nf_tables".into());
    let mut routes = accepting_routes(dir.path(), &fake).await;
    let m = map(vec![peer(2, &["10.96.0.0/12"])], &[]);
    routes.network_up(&m, "warren0", controller()).await;
    assert!(fake.state().table.is_empty());
    assert!(routes.withheld().is_some());
    assert_eq!(routes.effect(id()).state, EffectState::Failed);
    assert!(routes
        .engine_routes(&m, "warren0", &controller())
        .is_empty());

    // nft works again: the next tick installs the filter, then the routes.
    fake.state().refuse_filter = None;
    routes.tick().await;
    assert!(routes.withheld().is_none());
    assert_eq!(fake.state().table.len(), 1);
}

#[tokio::test]
async fn shutdown_and_a_start_after_a_crash_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeRoutes::default();
    let mut routes = accepting_routes(dir.path(), &fake).await;
    let m = map(vec![peer(2, &["10.96.0.0/12"])], &[]);
    routes.network_up(&m, "warren0", controller()).await;
    // A crash: the next agent finds the marker and clears everything.
    drop(routes);
    let after_crash = FakeRoutes::default();
    after_crash.state().table = fake.state().table.clone();
    let mut routes = Routes::start_on(dir.path(), Arc::new(after_crash.clone())).await;
    assert!(after_crash.state().table.is_empty());
    assert!(!dir.path().join("routes-installed.json").exists());

    routes.network_up(&m, "warren0", controller()).await;
    assert_eq!(after_crash.state().table.len(), 1);
    routes.shutdown().await;
    let s = after_crash.state();
    assert!(s.table.is_empty() && s.rules.is_empty() && s.filter.is_none());
}
