//! The process's open-file limit (`RLIMIT_NOFILE`): every connection is a file
//! descriptor, so `serve` raises the soft limit to the hard one at start, and the
//! automatic connection caps are derived from it.

use std::io;

/// The soft and hard open-file limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdLimit {
    /// The limit in force.
    pub soft: u64,
    /// The most the soft limit may be raised to.
    pub hard: u64,
}

/// The current limits.
#[allow(clippy::unnecessary_cast)] // `rlim_t` is not `u64` on every platform
pub fn current() -> io::Result<FdLimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable `rlimit` for the call's duration.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(FdLimit {
        soft: limit.rlim_cur as u64,
        hard: limit.rlim_max as u64,
    })
}

/// Raises the soft limit to the hard one, and returns the limits before and after.
pub fn raise_to_hard() -> io::Result<(FdLimit, FdLimit)> {
    let before = current()?;
    if before.soft < before.hard {
        let limit = libc::rlimit {
            rlim_cur: before.hard as libc::rlim_t,
            rlim_max: before.hard as libc::rlim_t,
        };
        // SAFETY: `limit` is a valid `rlimit`; the call only reads it.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok((before, current()?))
}

/// The soft limit, or a conservative 1024 (the usual default) if it cannot be read.
pub fn soft_or_default() -> u64 {
    current().map(|limit| limit.soft).unwrap_or(1024)
}
