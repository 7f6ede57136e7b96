//! The fuzz targets of the STUN server and the control frames, replayed on
//! stable over their committed inputs (`fuzz/corpus`, `fuzz/regressions`):
//! the same checks the fuzzer runs, from `fuzz/checks`.

#[path = "../../fuzz/checks/control.rs"]
mod control;
#[path = "../../fuzz/checks/stun.rs"]
mod stun;
