//! The routes' lifecycle on a fake system: what a netmap installs, what
//! going down and shutting down remove, and the filter failing closed.

use std::sync::Arc;

use super::os::fake::FakeRoutes;
use super::plan::tests::{accepting, id, map, net, peer};
use super::requests::Effects;
use super::settings::SettingsFile;
use super::*;
use warren_proto::local_api::EffectState;
use warren_proto::routes::{AdvertiseMode, AdvertiseRequest};
use warren_proto::site::SiteDns;

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

fn advertise(
    routes: &mut Routes,
    req: AdvertiseRequest,
) -> Result<Effects, crate::daemon::Refusal> {
    let (tx, _rx) = tokio::sync::oneshot::channel();
    let (_, outcome) = routes
        .handle(RoutesRequest::Advertise(req, tx), &[id()])
        .unwrap();
    outcome
}

fn request(routes: &[&str], site: Option<SiteSpec>, no_site: bool) -> AdvertiseRequest {
    AdvertiseRequest {
        network: None,
        mode: AdvertiseMode::Add,
        routes: routes.iter().map(|r| net(r)).collect(),
        site,
        no_site,
    }
}

fn site(name: &str, dns: Option<(&str, &str)>) -> SiteSpec {
    SiteSpec {
        name: name.into(),
        dns: dns.map(|(domain, server)| SiteDns {
            domain: domain.into(),
            server: server.parse().unwrap(),
        }),
    }
}

#[tokio::test]
async fn a_site_goes_with_the_routes_to_the_controller_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeRoutes::default();
    let mut routes = Routes::start_on(dir.path(), Arc::new(fake.clone())).await;
    let m = site("m", Some(("Cluster.Local.", "10.96.0.10")));
    let effects = advertise(&mut routes, request(&["10.96.0.0/12"], Some(m), false)).unwrap();
    let expected = Advertised {
        routes: vec![net("10.96.0.0/12")],
        site: Some(site("m", Some(("cluster.local", "10.96.0.10")))),
    };
    assert_eq!(effects.advertise, Some((id(), expected.clone())));

    // A restarted agent sends the same again (after each reconnect too).
    drop(routes);
    let mut routes = Routes::start_on(dir.path(), Arc::new(fake.clone())).await;
    assert_eq!(routes.advertised_for(&[id()]), vec![(id(), expected)]);

    // More routes without --site keep the site; --no-site clears it.
    let effects = advertise(&mut routes, request(&["10.244.0.0/16"], None, false)).unwrap();
    let (_, sent) = effects.advertise.unwrap();
    assert_eq!(sent.routes.len(), 2);
    assert_eq!(sent.site.map(|s| s.name), Some("m".to_owned()));
    let (_, sent) = advertise(&mut routes, request(&[], None, true))
        .unwrap()
        .advertise
        .unwrap();
    assert_eq!(sent.routes.len(), 2);
    assert_eq!(sent.site, None);

    // Withdrawing everything leaves no site behind.
    advertise(&mut routes, request(&[], Some(site("w", None)), false)).unwrap();
    let none = AdvertiseRequest {
        mode: AdvertiseMode::Replace,
        ..request(&[], None, false)
    };
    let (_, sent) = advertise(&mut routes, none).unwrap().advertise.unwrap();
    assert_eq!(sent, Advertised::default());
}

#[tokio::test]
async fn bad_sites_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut routes = Routes::start_on(dir.path(), Arc::new(FakeRoutes::default())).await;
    for bad in [
        site("M", None),
        site("", None),
        site("a.b", None),
        site("m", Some(("", "10.96.0.10"))),
        site("m", Some(("a..b", "10.96.0.10"))),
        site("m", Some(("cluster.local", "0.0.0.0"))),
        site("m", Some(("cluster.local", "127.0.0.1"))),
    ] {
        let refusal = advertise(
            &mut routes,
            request(&["10.96.0.0/12"], Some(bad.clone()), false),
        )
        .expect_err(&format!("{bad:?} is refused"));
        assert_eq!((refusal.status, refusal.code), (400, "bad_site"), "{bad:?}");
    }
    let both = request(&["10.96.0.0/12"], Some(site("m", None)), true);
    assert!(advertise(&mut routes, both).is_err());
    assert!(routes.advertised_for(&[id()]).is_empty());
}

#[tokio::test]
async fn the_status_shows_the_site_and_what_this_router_translates() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeRoutes::default();
    let mut routes = Routes::start_on(dir.path(), Arc::new(fake.clone())).await;
    advertise(
        &mut routes,
        request(&["10.96.0.0/12"], Some(site("m", None)), false),
    )
    .unwrap();
    let mut m = map(vec![], &[("10.96.0.0/12", true)]);
    let pair = warren_proto::site::MappedPrefix {
        real: "10.96.0.0/12".parse().unwrap(),
        mapped: "100.64.0.0/12".parse().unwrap(),
    };
    m.settings.sites = vec![warren_proto::site::Site {
        name: "m".into(),
        routers: vec![m.self_node.node_id],
        dns: None,
        mapped: vec![pair],
    }];
    assert_eq!(own_mapped(&m), vec![pair]);
    routes.network_up(&m, "warren0", controller()).await;
    let status = routes.status(&[id()]).await;
    let net = &status.networks[0];
    assert_eq!(net.site.as_ref().map(|s| s.name.as_str()), Some("m"));
    assert_eq!(net.mapped, vec![pair]);
    // Another site's router translates nothing of it.
    m.settings.sites[0].routers = vec![];
    assert!(own_mapped(&m).is_empty());
}
