//! Dropping root after the listeners are bound (`--user`, `--group`).

use nix::unistd::{self, Gid, Group, Uid, User};

use super::Error;

/// Switches to `user` (and its group, or `group`), or just to `group`.
pub fn drop_to(user: Option<&str>, group: Option<&str>) -> Result<(), Error> {
    if user.is_none() && group.is_none() {
        return Ok(());
    }
    if !Uid::effective().is_root() {
        return Err(Error::new("--user/--group: only root can switch users"));
    }
    let u = match user {
        Some(name) => Some(
            User::from_name(name)
                .ok()
                .flatten()
                .ok_or_else(|| Error::new(format!("--user {name:?}: no such user")))?,
        ),
        None => None,
    };
    let gid = match (group, &u) {
        (Some(name), _) => lookup_group(name)?,
        (None, Some(u)) => u.gid,
        (None, None) => return Ok(()),
    };
    unistd::setgroups(&[gid]).map_err(|e| Error::new(format!("setgroups: {e}")))?;
    unistd::setgid(gid).map_err(|e| Error::new(format!("--group: setgid {gid}: {e}")))?;
    if let Some(u) = u {
        unistd::setuid(u.uid).map_err(|e| Error::new(format!("--user {}: setuid: {e}", u.name)))?;
    }
    Ok(())
}

fn lookup_group(name: &str) -> Result<Gid, Error> {
    if let Ok(n) = name.parse::<u32>() {
        return Ok(Gid::from_raw(n));
    }
    Group::from_name(name)
        .ok()
        .flatten()
        .map(|g| g.gid)
        .ok_or_else(|| Error::new(format!("--group {name:?}: no such group")))
}
