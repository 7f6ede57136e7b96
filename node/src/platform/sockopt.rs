//! Socket options that the standard library and socket2 do not offer.
#![allow(unsafe_code)]

use std::os::fd::AsRawFd;

/// Sets a socket buffer size past `net.core.[rw]mem_max` (needs CAP_NET_ADMIN).
/// Big buffers remove receive drops at high rates; the caller falls back to
/// the ordinary option when this is refused.
pub fn force_buffer(
    socket: &impl AsRawFd,
    option: libc::c_int,
    bytes: usize,
) -> std::io::Result<()> {
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: `socket` is an open descriptor for the duration of the call, and
    // the option value points at a live c_int whose size we pass.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            std::ptr::addr_of!(value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Sets `SO_MARK` (needs CAP_NET_ADMIN): policy routing rules match it.
pub fn set_mark(socket: &impl AsRawFd, mark: u32) -> std::io::Result<()> {
    // SAFETY: `socket` is an open descriptor for the duration of the call, and
    // the option value points at a live u32 whose size we pass.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_MARK,
            std::ptr::addr_of!(mark).cast(),
            std::mem::size_of::<u32>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The effective user id of this process.
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}
