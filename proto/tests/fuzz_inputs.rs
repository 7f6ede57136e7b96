//! The fuzz targets of warren-proto's parsers, replayed on stable over
//! their committed inputs (`fuzz/corpus`, `fuzz/regressions`): the same
//! checks the fuzzer runs, from `fuzz/checks`.

#[path = "../../fuzz/checks/disco.rs"]
mod disco;
#[path = "../../fuzz/checks/invite.rs"]
mod invite;
#[path = "../../fuzz/checks/relay.rs"]
mod relay;
