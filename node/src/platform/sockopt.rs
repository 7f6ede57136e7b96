//! Socket options that the standard library and socket2 do not offer.
#![allow(unsafe_code)]

use std::os::fd::AsRawFd;

/// `setsockopt` of one plain value (an int, a mark) at `level`/`option`.
fn set<T: Copy>(
    socket: &impl AsRawFd,
    level: libc::c_int,
    option: libc::c_int,
    value: T,
) -> std::io::Result<()> {
    // SAFETY: `socket` is an open descriptor for the duration of the call, and
    // the option value points at a live `T` whose size we pass.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            option,
            std::ptr::addr_of!(value).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Sets a socket buffer size past `net.core.[rw]mem_max` (needs CAP_NET_ADMIN).
/// Big buffers remove receive drops at high rates; the caller falls back to
/// the ordinary option when this is refused.
pub fn force_buffer(
    socket: &impl AsRawFd,
    option: libc::c_int,
    bytes: usize,
) -> std::io::Result<()> {
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    set(socket, libc::SOL_SOCKET, option, value)
}

/// Sets `SO_MARK` (needs CAP_NET_ADMIN): policy routing rules match it.
pub fn set_mark(socket: &impl AsRawFd, mark: u32) -> std::io::Result<()> {
    set(socket, libc::SOL_SOCKET, libc::SO_MARK, mark)
}

/// Lets IPv4 datagrams from `socket` be fragmented: no DF bit, so a
/// narrower hop on the way fragments them, and the host itself fragments
/// what is larger than its interface's MTU (`IP_PMTUDISC_OMIT`; with
/// `INTERFACE` it would refuse them). A GSO send with segments larger
/// than that MTU is refused with `EMSGSIZE`, and the caller sends its
/// segments one by one. On a dual-stack socket this covers its v4-mapped
/// peers.
pub fn allow_fragments_v4(socket: &impl AsRawFd) -> std::io::Result<()> {
    set(
        socket,
        libc::IPPROTO_IP,
        libc::IP_MTU_DISCOVER,
        libc::IP_PMTUDISC_OMIT,
    )
}

/// Lets the host fragment IPv6 datagrams from `socket` (IPv6 routers never
/// do): `IPV6_DONTFRAG` off, and the path MTU learned from "packet too
/// big" as the size to fragment at (`IPV6_PMTUDISC_WANT`). A GSO send
/// with segments larger than that is refused with `EMSGSIZE`, and the
/// caller sends its segments one by one.
pub fn allow_fragments_v6(socket: &impl AsRawFd) -> std::io::Result<()> {
    set(
        socket,
        libc::IPPROTO_IPV6,
        libc::IPV6_DONTFRAG,
        0 as libc::c_int,
    )?;
    set(
        socket,
        libc::IPPROTO_IPV6,
        libc::IPV6_MTU_DISCOVER,
        libc::IPV6_PMTUDISC_WANT,
    )
}

/// Caps the MTU of IPv6 sends from `socket` (`IPV6_MTU`): a narrow uplink
/// that unit tests can make without privileges.
#[cfg(test)]
pub fn set_mtu_v6(socket: &impl AsRawFd, mtu: u32) -> std::io::Result<()> {
    let value = libc::c_int::try_from(mtu).unwrap_or(libc::c_int::MAX);
    set(socket, libc::IPPROTO_IPV6, libc::IPV6_MTU, value)
}

/// `IP_MTU_DISCOVER` of `socket`: how it treats DF and the path MTU.
#[cfg(test)]
pub fn mtu_discover_v4(socket: &impl AsRawFd) -> std::io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `socket` is open for the call; value and len point at live
    // locals of the sizes passed.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            std::ptr::addr_of_mut!(value).cast(),
            &mut len,
        )
    };
    if rc == 0 {
        Ok(value)
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The effective user id of this process.
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The supplementary groups the process at the other end of a Unix socket
/// held when it connected (`SO_PEERGROUPS`). Unlike `/proc/PID/status` this
/// needs no view of the caller's process, so it works under systemd's
/// `ProtectProc=invisible`.
pub fn peer_groups(socket: &impl AsRawFd) -> std::io::Result<Vec<u32>> {
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    loop {
        let mut len = (groups.len() * std::mem::size_of::<libc::gid_t>()) as libc::socklen_t;
        // SAFETY: `socket` is open for the call; the buffer is `len` bytes of
        // live, writable gid_t slots, and the kernel writes at most `len`.
        let rc = unsafe {
            libc::getsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let count = len as usize / std::mem::size_of::<libc::gid_t>();
        if rc == 0 {
            groups.truncate(count);
            return Ok(groups);
        }
        let error = std::io::Error::last_os_error();
        // ERANGE: the kernel put the size it needs in `len`. Linux caps
        // supplementary groups at 65,536, so this grows at most once.
        if error.raw_os_error() != Some(libc::ERANGE) || count <= groups.len() || count > 65_536 {
            return Err(error);
        }
        groups.resize(count, 0);
    }
}
