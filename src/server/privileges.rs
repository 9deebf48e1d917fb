//! Users and groups: `--user`, `--group` and `--socket-owner` resolved from
//! a name or a numeric id, and root dropped after the listeners are bound.
//! The configuration checks every name with these same functions, so a
//! user that does not exist is a usage error (exit 2) before anything is
//! bound, and the drop itself cannot meet a new surprise.

use std::ffi::CString;

use nix::unistd::{self, Gid, Group, Uid, User};

use super::Error;

/// A user as `--user` or `--socket-owner` names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub uid: Uid,
    /// The primary group; `None` for a numeric uid with no passwd entry.
    pub gid: Option<Gid>,
    /// The login name, for `initgroups`; `None` with no passwd entry.
    pub name: Option<String>,
}

/// A user name or a numeric uid. A number with no passwd entry is still a
/// uid (as in containers), with no primary group.
pub fn resolve_user(s: &str) -> Result<Account, String> {
    if let Ok(n) = s.parse::<u32>() {
        let uid = Uid::from_raw(n);
        return Ok(match User::from_uid(uid).ok().flatten() {
            Some(u) => account(u),
            None => Account {
                uid,
                gid: None,
                name: None,
            },
        });
    }
    match User::from_name(s) {
        Ok(Some(u)) => Ok(account(u)),
        Ok(None) => Err(format!("no such user (see getent passwd {s})")),
        Err(e) => Err(format!("cannot look the user up: {e}")),
    }
}

fn account(u: User) -> Account {
    Account {
        uid: u.uid,
        gid: Some(u.gid),
        name: Some(u.name),
    }
}

/// A group name or a numeric gid.
pub fn resolve_group(s: &str) -> Result<Gid, String> {
    if let Ok(n) = s.parse::<u32>() {
        return Ok(Gid::from_raw(n));
    }
    match Group::from_name(s) {
        Ok(Some(g)) => Ok(g.gid),
        Ok(None) => Err(format!("no such group (see getent group {s})")),
        Err(e) => Err(format!("cannot look the group up: {e}")),
    }
}

/// A file's owner and group to chown to; `None` leaves that part as is.
pub type Owner = (Option<Uid>, Option<Gid>);

/// Who a created Unix socket belongs to: `--socket-owner USER[:GROUP]`,
/// else the `--user`/`--group` the process drops to; `None` when neither
/// says (the socket stays the running user's).
pub fn socket_owner(
    owner: Option<&(String, Option<String>)>,
    user: Option<&str>,
    group: Option<&str>,
) -> Result<Option<Owner>, Error> {
    let (user, group, flag) = match owner {
        Some((u, g)) => (Some(u.as_str()), g.as_deref(), "--socket-owner"),
        None => (user, group, "--user/--group"),
    };
    if user.is_none() && group.is_none() {
        return Ok(None);
    }
    let named = |e: String| Error::new(format!("{flag}: {e}"));
    let account = user.map(resolve_user).transpose().map_err(named)?;
    let gid = match group {
        Some(g) => Some(resolve_group(g).map_err(named)?),
        None => account.as_ref().and_then(|a| a.gid),
    };
    Ok(Some((account.map(|a| a.uid), gid)))
}

/// Switches to `user` (its groups, or `group`), or just to `group`.
pub fn drop_to(user: Option<&str>, group: Option<&str>) -> Result<(), Error> {
    if user.is_none() && group.is_none() {
        return Ok(());
    }
    if !Uid::effective().is_root() {
        if already(user, group) {
            // A binary upgrade's new master: the old one dropped root.
            return Ok(());
        }
        return Err(Error::new(
            "--user/--group: only root can switch users (start fastgate as root, or drop the options)",
        ));
    }
    let account = match user {
        Some(u) => Some(resolve_user(u).map_err(|e| Error::new(format!("--user {u:?}: {e}")))?),
        None => None,
    };
    let gid = match (group, &account) {
        (Some(g), _) => resolve_group(g).map_err(|e| Error::new(format!("--group {g:?}: {e}")))?,
        (None, Some(Account { gid: Some(gid), .. })) => *gid,
        (None, _) => {
            return Err(Error::new(
                "--user: the uid has no passwd entry, so give its group with --group",
            ))
        }
    };
    set_groups(account.as_ref(), gid)?;
    unistd::setgid(gid).map_err(|e| Error::new(format!("--group: setgid {gid}: {e}")))?;
    if let Some(a) = account {
        unistd::setuid(a.uid).map_err(|e| Error::new(format!("--user: setuid {}: {e}", a.uid)))?;
    }
    Ok(())
}

/// Whether the process already runs as `user`/`group`.
fn already(user: Option<&str>, group: Option<&str>) -> bool {
    let uid_ok = user.is_none_or(|u| resolve_user(u).is_ok_and(|a| a.uid == Uid::effective()));
    let gid_ok = group.is_none_or(|g| resolve_group(g).is_ok_and(|g| g == Gid::effective()));
    uid_ok && gid_ok
}

/// The user's supplementary groups (`initgroups`, as login does), or only
/// `gid` for a group switch or a uid with no passwd entry.
fn set_groups(account: Option<&Account>, gid: Gid) -> Result<(), Error> {
    let name = account.and_then(|a| a.name.as_deref());
    let result = match name.map(CString::new) {
        Some(Ok(name)) => unistd::initgroups(&name, gid),
        _ => unistd::setgroups(&[gid]),
    };
    result.map_err(|e| Error::new(format!("--user/--group: setting the groups: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_resolve_alike() {
        let by_name = resolve_user("root").unwrap();
        assert_eq!(resolve_user("0").unwrap(), by_name);
        assert_eq!(by_name.name.as_deref(), Some("root"));
        assert_eq!(resolve_group("0").unwrap(), Gid::from_raw(0));
        assert_eq!(resolve_group("root").unwrap(), Gid::from_raw(0));
    }

    #[test]
    fn a_uid_without_an_entry_is_still_a_uid() {
        let a = resolve_user("4000000000").unwrap();
        assert_eq!((a.uid.as_raw(), a.gid, a.name), (4_000_000_000, None, None));
    }

    #[test]
    fn unknown_names_say_so() {
        let e = resolve_user("no-such-user-here").unwrap_err();
        assert!(e.contains("no such user"), "{e}");
        let e = resolve_group("no-such-group-here").unwrap_err();
        assert!(e.contains("no such group"), "{e}");
    }

    #[test]
    fn the_socket_owner_comes_from_the_option_then_the_user() {
        let root = (Some(Uid::from_raw(0)), Some(Gid::from_raw(0)));
        let owner = ("root".to_string(), None);
        assert_eq!(socket_owner(Some(&owner), None, None).unwrap(), Some(root));
        assert_eq!(socket_owner(None, Some("0"), None).unwrap(), Some(root));
        assert_eq!(
            socket_owner(None, None, Some("0")).unwrap(),
            Some((None, Some(Gid::from_raw(0))))
        );
        assert_eq!(socket_owner(None, None, None).unwrap(), None);
    }
}
