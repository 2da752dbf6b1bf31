//! Namespace ops: create, mkdir, symlink, link, unlink, rmdir, rename.

use super::{Fail, State};
use crate::errno::Errno;
use crate::keys::{self, Space};
use crate::op::{OpResult, RenameMode};
use crate::types::{FileKind, Ino, LINK_MAX, Node, ROOT_INO, SYMLINK_MAX, check_name};

pub(super) fn genesis(st: &mut State, perm: u32, uid: u32, gid: u32) -> Result<OpResult, Fail> {
    if st.meta.applied != 0 || st.meta.next_ino != ROOT_INO || st.load(ROOT_INO)?.is_some() {
        return Err(Errno::EEXIST.into());
    }
    let mut root = st.new_node(FileKind::Dir, perm, uid, gid);
    debug_assert_eq!(root.ino, ROOT_INO);
    root.nlink = 2;
    root.parent = ROOT_INO;
    root.size = super::DIR_BASE_SIZE;
    st.set(root);
    Ok(OpResult::Node {
        ino: ROOT_INO,
        created: true,
    })
}

/// The owner of a new node: a setgid directory passes on its group, and to
/// subdirectories its setgid bit.
fn inherit(parent: &Node, kind: FileKind, perm: u32, gid: u32) -> (u32, u32) {
    if parent.perm & libc::S_ISGID != 0 {
        let perm = if kind == FileKind::Dir {
            perm | libc::S_ISGID
        } else {
            perm
        };
        (perm, parent.gid)
    } else {
        (perm, gid)
    }
}

pub(super) fn create(
    st: &mut State,
    parent: Ino,
    name: &[u8],
    kind: FileKind,
    (perm, uid, gid): (u32, u32, u32),
    excl: bool,
    truncate: bool,
) -> Result<OpResult, Fail> {
    if kind == FileKind::Symlink {
        return Err(Errno::EINVAL.into());
    }
    check_name(name)?;
    let mut p = st.dir(parent)?;
    if let Some((ino, k)) = st.dirent(parent, name)? {
        if excl {
            return Err(Errno::EEXIST.into());
        }
        if k == FileKind::Dir {
            return Err(Errno::EISDIR.into());
        }
        if truncate && k == FileKind::File {
            super::data::truncate(st, ino, 0)?;
        }
        return Ok(OpResult::Node {
            ino,
            created: false,
        });
    }
    if kind == FileKind::Dir && p.nlink >= LINK_MAX {
        return Err(Errno::EMLINK.into());
    }
    let (perm, gid) = inherit(&p, kind, perm, gid);
    let mut n = st.new_node(kind, perm, uid, gid);
    if kind == FileKind::Dir {
        n.nlink = 2;
        n.parent = parent;
        n.size = super::DIR_BASE_SIZE;
        p.nlink += 1;
    }
    st.link_entry(&mut p, name, n.ino, kind);
    let ino = n.ino;
    st.set(n);
    st.set(p);
    Ok(OpResult::Node { ino, created: true })
}

pub(super) fn symlink(
    st: &mut State,
    parent: Ino,
    name: &[u8],
    target: &[u8],
    uid: u32,
    gid: u32,
) -> Result<OpResult, Fail> {
    check_name(name)?;
    if target.is_empty() {
        return Err(Errno::ENOENT.into());
    }
    if target.len() > SYMLINK_MAX {
        return Err(Errno::ENAMETOOLONG.into());
    }
    let mut p = st.dir(parent)?;
    if st.dirent(parent, name)?.is_some() {
        return Err(Errno::EEXIST.into());
    }
    let (_, gid) = inherit(&p, FileKind::Symlink, 0, gid);
    let mut n = st.new_node(FileKind::Symlink, 0o777, uid, gid);
    n.target = target.to_vec();
    n.size = target.len() as u64;
    st.link_entry(&mut p, name, n.ino, FileKind::Symlink);
    let ino = n.ino;
    st.set(n);
    st.set(p);
    Ok(OpResult::Node { ino, created: true })
}

pub(super) fn link(st: &mut State, ino: Ino, parent: Ino, name: &[u8]) -> Result<OpResult, Fail> {
    check_name(name)?;
    let mut n = st.get(ino)?;
    if n.kind == FileKind::Dir {
        return Err(Errno::EPERM.into());
    }
    if n.nlink == 0 {
        return Err(Errno::ENOENT.into());
    }
    let mut p = st.dir(parent)?;
    if st.dirent(parent, name)?.is_some() {
        return Err(Errno::EEXIST.into());
    }
    if n.nlink >= LINK_MAX {
        return Err(Errno::EMLINK.into());
    }
    st.link_entry(&mut p, name, ino, n.kind);
    st.set(p);
    n.nlink += 1;
    n.ctime = st.now;
    st.set(n);
    Ok(OpResult::Node {
        ino,
        created: false,
    })
}

pub(super) fn unlink(
    st: &mut State,
    parent: Ino,
    name: &[u8],
    keep_orphan: bool,
) -> Result<OpResult, Fail> {
    check_name(name)?;
    let mut p = st.dir(parent)?;
    let (ino, kind) = st.dirent(parent, name)?.ok_or(Errno::ENOENT)?;
    if kind == FileKind::Dir {
        return Err(Errno::EISDIR.into());
    }
    let n = st.get(ino)?;
    st.unlink_entry(&mut p, name, ino);
    st.set(p);
    st.drop_link(n, keep_orphan)?;
    Ok(OpResult::Done)
}

pub(super) fn rmdir(st: &mut State, parent: Ino, name: &[u8]) -> Result<OpResult, Fail> {
    check_name(name)?;
    let mut p = st.dir(parent)?;
    let (ino, kind) = st.dirent(parent, name)?.ok_or(Errno::ENOENT)?;
    if kind != FileKind::Dir {
        return Err(Errno::ENOTDIR.into());
    }
    let d = st.get(ino)?;
    if d.entries > 0 {
        return Err(Errno::ENOTEMPTY.into());
    }
    st.unlink_entry(&mut p, name, ino);
    p.nlink -= 1;
    st.set(p);
    st.purge(&d)?;
    Ok(OpResult::Done)
}

/// Whether directory `dir` is `ancestor` or lies below it.
fn is_within(st: &mut State, mut dir: Ino, ancestor: Ino) -> Result<bool, Fail> {
    // Parent pointers of directories lead to the root; the walk is bounded
    // by the node count so a corrupt cycle cannot hang apply.
    let mut steps = 0u64;
    loop {
        if dir == ancestor {
            return Ok(true);
        }
        if dir == ROOT_INO {
            return Ok(false);
        }
        steps += 1;
        if steps > st.meta.nodes + 1 {
            return Err(Fail::Corrupt(format!("directory parent cycle at {dir}")));
        }
        dir = st.dir(dir)?.parent;
    }
}

pub(super) fn rename(
    st: &mut State,
    (parent, name): (Ino, &[u8]),
    (new_parent, new_name): (Ino, &[u8]),
    mode: RenameMode,
    keep_orphan: bool,
) -> Result<OpResult, Fail> {
    check_name(name)?;
    check_name(new_name)?;
    st.dir(parent)?;
    st.dir(new_parent)?;
    let (src, src_kind) = st.dirent(parent, name)?.ok_or(Errno::ENOENT)?;
    let dst = st.dirent(new_parent, new_name)?;
    match (mode, dst) {
        (RenameMode::NoReplace, Some(_)) => return Err(Errno::EEXIST.into()),
        (RenameMode::Exchange, None) => return Err(Errno::ENOENT.into()),
        _ => {}
    }
    if src_kind == FileKind::Dir && is_within(st, new_parent, src)? {
        return Err(Errno::EINVAL.into());
    }
    if let Some((dst_ino, dst_kind)) = dst {
        if dst_ino == src {
            // Same file under both names: POSIX says do nothing.
            return Ok(OpResult::Done);
        }
        if mode == RenameMode::Exchange {
            if dst_kind == FileKind::Dir && is_within(st, parent, dst_ino)? {
                return Err(Errno::EINVAL.into());
            }
            return exchange(
                st,
                (parent, name, src, src_kind),
                (new_parent, new_name, dst_ino, dst_kind),
            );
        }
        match (src_kind == FileKind::Dir, dst_kind == FileKind::Dir) {
            (true, false) => return Err(Errno::ENOTDIR.into()),
            (false, true) => return Err(Errno::EISDIR.into()),
            _ => {}
        }
        let d = st.get(dst_ino)?;
        if d.kind == FileKind::Dir && d.entries > 0 {
            return Err(Errno::ENOTEMPTY.into());
        }
        // Remove the target entry.
        let mut dp = st.dir(new_parent)?;
        st.unlink_entry(&mut dp, new_name, dst_ino);
        if d.kind == FileKind::Dir {
            dp.nlink -= 1;
            st.set(dp);
            st.purge(&d)?;
        } else {
            st.set(dp);
            st.drop_link(d, keep_orphan)?;
        }
    }
    let moves_dir = src_kind == FileKind::Dir && parent != new_parent;
    if moves_dir && st.dir(new_parent)?.nlink >= LINK_MAX {
        return Err(Errno::EMLINK.into());
    }
    let mut sp = st.dir(parent)?;
    st.unlink_entry(&mut sp, name, src);
    if moves_dir {
        sp.nlink -= 1;
    }
    st.set(sp);
    let mut dp = st.dir(new_parent)?;
    st.link_entry(&mut dp, new_name, src, src_kind);
    if moves_dir {
        dp.nlink += 1;
    }
    st.set(dp);
    let mut n = st.get(src)?;
    n.ctime = st.now;
    if src_kind == FileKind::Dir {
        n.parent = new_parent;
    }
    st.set(n);
    Ok(OpResult::Done)
}

/// `RENAME_EXCHANGE`: both entries exist and swap targets.
fn exchange(
    st: &mut State,
    (p1, n1, i1, k1): (Ino, &[u8], Ino, FileKind),
    (p2, n2, i2, k2): (Ino, &[u8], Ino, FileKind),
) -> Result<OpResult, Fail> {
    let now = st.now;
    let d1 = (k1 == FileKind::Dir) as i64 - (k2 == FileKind::Dir) as i64;
    if p1 != p2 && d1 != 0 {
        // The parent gaining a subdirectory must have room for it.
        let gainer = if d1 > 0 { p2 } else { p1 };
        if st.dir(gainer)?.nlink >= LINK_MAX {
            return Err(Errno::EMLINK.into());
        }
    }
    st.txn.put(
        Space::Dirents,
        keys::dirent_key(p1, n1),
        crate::records::encode_dirent(i2, k2).to_vec(),
    );
    st.txn.put(
        Space::Dirents,
        keys::dirent_key(p2, n2),
        crate::records::encode_dirent(i1, k1).to_vec(),
    );
    st.txn.delete(Space::Links, keys::link_key(i1, p1, n1));
    st.txn.delete(Space::Links, keys::link_key(i2, p2, n2));
    st.txn
        .put(Space::Links, keys::link_key(i1, p2, n2), Vec::new());
    st.txn
        .put(Space::Links, keys::link_key(i2, p1, n1), Vec::new());
    for (p, delta) in [(p1, -d1), (p2, d1)] {
        let mut d = st.dir(p)?;
        if p1 != p2 {
            d.nlink = (i64::from(d.nlink) + delta) as u32;
        }
        d.mtime = now;
        d.ctime = now;
        st.set(d);
    }
    for (ino, new_parent) in [(i1, p2), (i2, p1)] {
        let mut n = st.get(ino)?;
        n.ctime = now;
        if n.kind == FileKind::Dir {
            n.parent = new_parent;
        }
        st.set(n);
    }
    Ok(OpResult::Done)
}

pub(super) fn reclaim(st: &mut State, ino: Ino) -> Result<OpResult, Fail> {
    let n = st.get(ino)?;
    let orphan = st.txn.contains(Space::Orphans, &keys::ino_key(ino))?;
    if n.nlink != 0 || !orphan {
        return Err(Errno::EINVAL.into());
    }
    st.purge(&n)?;
    Ok(OpResult::Done)
}
