#!/usr/bin/env bash
# Mounts a demo workspace with the embedded leader, in the foreground.
set -euo pipefail
cd "$(dirname "$0")/../.."
STATE=${HSFS_DEMO_STATE:-/var/tmp/hsfs-demo/state}
MNT=${HSFS_DEMO_MNT:-/tmp/hsfs-demo}
HSFS=target/release/hsfs

[[ -f "$STATE/FORMAT" ]] || "$HSFS" init "$STATE"
mkdir -p "$MNT" 2>/dev/null || true
# A demo killed with SIGKILL leaves a dead mount behind: clear it.
if ! stat "$MNT" >/dev/null 2>&1; then
  echo "demo: clearing the stale mount at $MNT"
  fusermount3 -u "$MNT" 2>/dev/null || umount -l "$MNT"
fi
cat <<MSG
demo: mounting the workspace in $STATE at $MNT
demo: use it from another terminal, e.g.  cd $MNT && git init && ls -la
demo: inspect it with  $HSFS status $STATE   and   $HSFS log $STATE --tail 20
demo: stop with Ctrl-C (the store is closed cleanly; hsfs-fsck $STATE verifies it)
MSG
exec "$HSFS" mount "$STATE" "$MNT" --allow-other
