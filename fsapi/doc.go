// Package fsapi mounts a basefs filesystem with FUSE (through cgofuse, the
// FUSE 2 API on Linux), turning POSIX calls into replica reads and signed
// entries.
//
// What a process sees through the mount:
//
//   - Attributes come from the view without reading content: size, mtime
//     and mode from the entries, nlink from hard links, the mounting user as
//     owner, and write bits only where the mount's key has authority.
//     Inode numbers are stable per path; hard links share their primary's.
//   - Writes are buffered per file and become one write entry when a writer
//     closes the file (flush, whose result close(2) returns) or syncs it
//     (fsync, which returns once the entry is durable in the local log).
//     chmod and utimens on a file being written join that entry.
//   - Opening for writing, creating, making directories, unlinking, renaming
//     and chmod fail with EACCES at that call when the key lacks authority.
//   - Names matching Options.Ignore (editors' swap, backup and lock files
//     by default) are files kept in memory only, never replicated, and lost
//     at unmount. A replicated file renamed to such a name (vim's backup)
//     disappears locally at once and is deleted in the log after a grace
//     period, unless a new file takes its name first — the editor's save —
//     which then continues its history as one write entry. A local file
//     renamed to a real name is written as that file.
//   - Names matching Options.Temp (rsync's and sed -i's temporary files by
//     default) stay in memory while young: renamed over the real name they
//     become one write entry of it; still there after the grace period (or
//     fsynced, or at unmount) they are written as they are.
//   - Reads have close-to-open consistency: an open file reads the content
//     it had when opened; the kernel keeps its cached pages only while the
//     content is unchanged.
//   - Changes the replica applies from elsewhere invalidate the kernel's
//     cache at once (see Mount).
//
// Error kinds of the replica map one-to-one onto errno values (KindErrno).
//
// Without cgo the package still builds; Mount then returns an error saying
// this build has no FUSE support.
package fsapi
