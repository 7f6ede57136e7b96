//! The fuzz target of the engine's datagram path, replayed on stable over
//! its committed inputs (`fuzz/corpus`, `fuzz/regressions`): the same
//! check the fuzzer runs, from `fuzz/checks`.

#[path = "../../../fuzz/checks/engine.rs"]
mod engine;
