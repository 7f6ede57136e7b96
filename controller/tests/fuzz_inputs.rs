//! The fuzz targets of the STUN server and the control frames, replayed on
//! stable over their committed inputs (`fuzz/corpus`, `fuzz/regressions`):
//! the same checks the fuzzer runs, from `fuzz/checks`.

#[path = "../../fuzz/checks/control.rs"]
mod control;
// What the control check names as `crate::names`.
use warren_controller::names;
#[path = "../../fuzz/checks/stun.rs"]
mod stun;
