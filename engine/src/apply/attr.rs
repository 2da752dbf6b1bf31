//! Attribute ops: setattr (chmod, chown, truncate, utimens) and xattrs.

use super::{Fail, State};
use crate::errno::Errno;
use crate::keys::{self, Space};
use crate::op::{OpResult, SetAttr, SetTime, XattrMode};
use crate::types::{FileKind, Ino, XATTR_TOTAL_MAX, XATTR_VALUE_MAX, check_xattr_name};

pub(super) fn setattr(st: &mut State, ino: Ino, a: &SetAttr) -> Result<OpResult, Fail> {
    if let Some(size) = a.size {
        super::data::truncate(st, ino, size)?;
    }
    let mut n = st.get(ino)?;
    let now = st.now;
    let chown = a.uid.is_some() || a.gid.is_some();
    if let Some(uid) = a.uid {
        n.uid = uid;
    }
    if let Some(gid) = a.gid {
        n.gid = gid;
    }
    if chown && n.kind != FileKind::Dir && a.perm.is_none() {
        // Like Linux chown(2): setuid is cleared, setgid too when it means
        // "set group id on execution" (group execute is set).
        n.perm &= !libc::S_ISUID;
        if n.perm & libc::S_IXGRP != 0 {
            n.perm &= !libc::S_ISGID;
        }
    }
    if let Some(perm) = a.perm {
        n.perm = perm & 0o7777;
    }
    let resolve = |t: SetTime| match t {
        SetTime::Now => now,
        SetTime::At(t) => t,
    };
    if let Some(t) = a.atime {
        n.atime = resolve(t);
    }
    if let Some(t) = a.mtime {
        n.mtime = resolve(t);
    }
    n.ctime = now;
    st.set(n);
    Ok(OpResult::Done)
}

/// Total bytes (names plus values) of `ino`'s xattrs other than `except`.
fn xattr_total(st: &State, ino: Ino, except: &[u8]) -> Result<usize, Fail> {
    let prefix = keys::ino_key(ino);
    let mut total = 0;
    for r in st.txn.scan_prefix(Space::Xattrs, &prefix) {
        let (k, v) = r?;
        let name = &k[8..];
        if name != except {
            total += name.len() + v.len();
        }
    }
    Ok(total)
}

pub(super) fn setxattr(
    st: &mut State,
    ino: Ino,
    name: &[u8],
    value: &[u8],
    mode: XattrMode,
) -> Result<OpResult, Fail> {
    check_xattr_name(name)?;
    if value.len() > XATTR_VALUE_MAX {
        return Err(Errno::E2BIG.into());
    }
    let mut n = st.get(ino)?;
    let key = keys::xattr_key(ino, name);
    let exists = st.txn.contains(Space::Xattrs, &key)?;
    match (mode, exists) {
        (XattrMode::Create, true) => return Err(Errno::EEXIST.into()),
        (XattrMode::Replace, false) => return Err(Errno::ENODATA.into()),
        _ => {}
    }
    if xattr_total(st, ino, name)? + name.len() + value.len() > XATTR_TOTAL_MAX {
        return Err(Errno::ENOSPC.into());
    }
    st.txn.put(Space::Xattrs, key, value.to_vec());
    n.ctime = st.now;
    st.set(n);
    Ok(OpResult::Done)
}

pub(super) fn removexattr(st: &mut State, ino: Ino, name: &[u8]) -> Result<OpResult, Fail> {
    check_xattr_name(name)?;
    let mut n = st.get(ino)?;
    let key = keys::xattr_key(ino, name);
    if !st.txn.contains(Space::Xattrs, &key)? {
        return Err(Errno::ENODATA.into());
    }
    st.txn.delete(Space::Xattrs, key);
    n.ctime = st.now;
    st.set(n);
    Ok(OpResult::Done)
}
