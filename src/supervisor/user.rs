//! Running a worker as another user ([`WorkerSpec::user`]).
//!
//! Before each fork, on the supervisor's thread, [`resolve`] looks the name
//! up in the user database (`getpwnam_r`, and `getgrouplist` for the
//! supplementary groups) and decides with the pure [`decide`] whether the
//! worker can run as that user: herd running as root switches to it; herd
//! already running as that user runs the worker as itself; any other
//! combination is refused with [`Error::NeedsRoot`]. An unknown name is
//! [`Error::UnknownUser`]. Nothing is started in either case.
//!
//! The switch itself happens in the child between fork and exec (see
//! `process.rs`): `setgroups`, `setgid`, `setuid`, in that order, then the
//! working directory, then the death signal, which a change of credentials
//! would otherwise clear. All the lookups (which allocate and may read files)
//! are done here, in the parent, so the child only makes system calls.

use std::ffi::CString;
use std::path::PathBuf;

use nix::unistd::{Gid, Uid, User};

use super::error::{Error, Result};
use super::spec::WorkerSpec;

/// Longest user name accepted; longer than any the usual tools create.
pub const MAX_USER_LEN: usize = 64;

/// Who a worker runs as, resolved from its `user` before the fork.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Identity {
    /// The user's name, as asked for.
    pub name: String,
    /// The user's home directory (for `HOME`).
    pub home: PathBuf,
    /// Whether the child must change credentials (herd is root), or already
    /// runs as this user.
    pub switch: Option<Credentials>,
}

/// The credentials the child takes on before exec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Credentials {
    pub uid: Uid,
    /// The primary group.
    pub gid: Gid,
    /// The supplementary groups, the primary one included.
    pub groups: Vec<Gid>,
}

/// Whether a worker's `user` can be honoured, given who herd runs as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// herd runs as root: the child switches to the user.
    Switch,
    /// herd already runs as that user: nothing to switch.
    AlreadyThatUser,
}

/// Decides from herd's effective uid and the user's uid whether a worker
/// asking for `user` can start: root switches, the user itself needs no
/// switch, anyone else is refused with [`Error::NeedsRoot`].
pub(crate) fn decide(worker: &str, user: &str, euid: u32, user_uid: u32) -> Result<Decision> {
    if euid == 0 {
        Ok(Decision::Switch)
    } else if euid == user_uid {
        Ok(Decision::AlreadyThatUser)
    } else {
        Err(Error::NeedsRoot {
            worker: worker.to_owned(),
            user: user.to_owned(),
            euid,
        })
    }
}

/// Why `name` cannot name a user, if it cannot: it must be 1 to
/// [`MAX_USER_LEN`] bytes without whitespace, control characters (NUL
/// included), `:` or `/`.
pub(crate) fn name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("must not be empty".into());
    }
    if name.len() > MAX_USER_LEN {
        return Some(format!(
            "{name:?} is {} bytes long; at most {MAX_USER_LEN} are allowed",
            name.len()
        ));
    }
    let bad = name
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || matches!(c, ':' | '/'))?;
    Some(format!(
        "{name:?} contains {bad:?}; a user name has no whitespace, control characters, ':' or '/'"
    ))
}

/// Looks up the spec's user, if it has one, and decides whether the worker
/// can run as it (see the module docs).
pub(crate) fn resolve(spec: &WorkerSpec) -> Result<Option<Identity>> {
    let Some(name) = spec.user.as_deref() else {
        return Ok(None);
    };
    let lookup_failed = |errno: nix::errno::Errno| Error::UserLookup {
        worker: spec.name.clone(),
        user: name.to_owned(),
        source: errno.into(),
    };
    let user = User::from_name(name)
        .map_err(lookup_failed)?
        .ok_or_else(|| Error::UnknownUser {
            worker: spec.name.clone(),
            user: name.to_owned(),
        })?;
    let euid = nix::unistd::geteuid().as_raw();
    let switch = match decide(&spec.name, name, euid, user.uid.as_raw())? {
        Decision::AlreadyThatUser => None,
        Decision::Switch => {
            // The name passed the syntax check, which rules out NUL.
            let c_name = CString::new(name).map_err(|_| Error::UnknownUser {
                worker: spec.name.clone(),
                user: name.to_owned(),
            })?;
            let groups = nix::unistd::getgrouplist(&c_name, user.gid).map_err(lookup_failed)?;
            Some(Credentials {
                uid: user.uid,
                gid: user.gid,
                groups,
            })
        }
    };
    Ok(Some(Identity {
        name: name.to_owned(),
        home: user.dir,
        switch,
    }))
}

/// Takes on `creds` in the child: supplementary groups, primary group, then
/// the user, so no step needs a privilege an earlier one dropped.
///
/// Only system calls, no allocation: it runs between fork and exec.
pub(crate) fn become_user(creds: &Credentials) -> nix::Result<()> {
    nix::unistd::setgroups(&creds.groups)?;
    nix::unistd::setgid(creds.gid)?;
    nix::unistd::setuid(creds.uid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_switches_to_any_user() {
        assert_eq!(decide("w", "nobody", 0, 65534).unwrap(), Decision::Switch);
        assert_eq!(decide("w", "root", 0, 0).unwrap(), Decision::Switch);
    }

    #[test]
    fn a_user_asking_for_itself_needs_no_switch() {
        assert_eq!(
            decide("w", "herd", 998, 998).unwrap(),
            Decision::AlreadyThatUser
        );
    }

    #[test]
    fn anyone_else_is_refused_naming_worker_user_and_own_uid() {
        let err = decide("thumbnailer", "nobody", 998, 65534).unwrap_err();
        assert!(
            matches!(&err, Error::NeedsRoot { worker, user, euid: 998 } if worker == "thumbnailer" && user == "nobody"),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            r#"worker thumbnailer sets user = "nobody", which needs the agent to run as root; it runs as uid 998"#
        );
        // Not even root's own name gets through without root.
        assert!(decide("w", "root", 998, 0).is_err());
    }

    #[test]
    fn user_names_are_checked_for_shape_only() {
        for good in ["nobody", "www-data", "svc.media_1", "Ünïcode", "a"] {
            assert_eq!(name_problem(good), None, "{good}");
        }
        assert_eq!(name_problem("").as_deref(), Some("must not be empty"));
        for bad in ["two words", "tab\there", "nul\0", "a:b", "a/b", "line\n"] {
            assert!(name_problem(bad).is_some(), "{bad:?} should be refused");
        }
        assert!(name_problem(&"u".repeat(MAX_USER_LEN)).is_none());
        let long = name_problem(&"u".repeat(MAX_USER_LEN + 1)).unwrap();
        assert!(long.contains("at most 64"), "{long}");
    }

    #[test]
    fn an_unknown_user_is_refused_naming_it() {
        let spec = WorkerSpec::new("w", "true").user("herd-no-such-user");
        let err = resolve(&spec).unwrap_err();
        assert!(
            matches!(&err, Error::UnknownUser { worker, user } if worker == "w" && user == "herd-no-such-user"),
            "{err:?}"
        );
    }

    #[test]
    fn a_known_user_resolves_to_its_ids_and_home() {
        let root = resolve(&WorkerSpec::new("w", "true").user("root"));
        if nix::unistd::geteuid().is_root() {
            let root = root.unwrap().unwrap();
            assert_eq!(root.name, "root");
            assert_eq!(root.home, PathBuf::from("/root"));
            let creds = root.switch.unwrap();
            assert_eq!((creds.uid.as_raw(), creds.gid.as_raw()), (0, 0));
            assert!(creds.groups.contains(&Gid::from_raw(0)));
        } else {
            assert!(matches!(root, Err(Error::NeedsRoot { .. })), "{root:?}");
        }
        assert_eq!(resolve(&WorkerSpec::new("w", "true")).unwrap(), None);
    }
}
