// Package handlers runs the user's scripts when the filesystem changes
// (`basefs run --handler [GLOB=]SCRIPT`, CONTRACT.md "Handlers").
//
// # What fires
//
// Every change the view applies (docs/semantics.md, "Changes"), local or
// remote, whose path — or, for a rename, whose old path — matches a
// handler's GLOB. No GLOB matches every path. A GLOB without a leading '/' is
// relative to '/'. '*', '?' and '[...]' never cross '/'; '**' does, and as a
// whole segment means zero or more directories: /etc/**/*.conf matches
// /etc/a.conf and /etc/x/y/a.conf, /etc/** matches /etc and everything below
// it, *.conf matches /a.conf only.
//
// A change fires once the content it shows is complete on this node
// (replica.ContentComplete): a remote write whose blocks have not arrived is
// held, and checked again as blocks arrive. Changes of one path stay in
// order: while one is held, later changes of its path (and of a rename's
// other path) wait behind it. A held change is released with a later change
// of its path whose content is complete (the file then shows that newer
// content), so a version whose blocks never come does not stall its path.
//
// # Batches
//
// A burst of changes runs a script once, not once per change. Per handler,
// changes collect until no new one has come for the quiet period (Quiet,
// 200 ms) or the first has waited the maximum delay (MaxDelay, 2 s); then the
// script runs once for the batch, with
//
//	BASEFS_EVENT, BASEFS_PATH,    the batch's last change
//	BASEFS_OLD_PATH (rename),
//	BASEFS_AUTHOR, BASEFS_ENTRY
//	BASEFS_NAME                   the filesystem name
//	BASEFS_MOUNT                  the mount point, when mounted
//	BASEFS_COUNT                  how many changes the batch holds
//	BASEFS_MERGED                 (only after an overflow) how many of them are folded, below
//	BASEFS_INITIAL=1              the batch holds --handler-initial changes
//
// and every change of the batch, in order, as one JSON object per line on
// its standard input:
//
//	{"event":"write","path":"/etc/app.conf","old_path":"","author":"3f2a…","entry":"9c1e…"}
//
// (author: the signing key's fingerprint; entry: the entry hash; "merged"
// and "initial" appear when set). A handler runs one script at a time, so
// its batches — and all changes of a path — reach it in order; changes that
// come while its script runs form the next batch. If a batch grows past
// MaxPending changes (a slow script under a storm of writes), each path
// keeps only its newest change, whose "merged" counts the older ones folded
// into it; renames, grants and revokes are never folded, so no path is
// dropped silently. BASEFS_COUNT still counts every change.
//
// # Running scripts
//
// SCRIPT is executed directly (not through a shell; it must be executable),
// in the mount directory when mounted, else the filesystem's directory, with
// the node's environment plus the variables above. At most Concurrency
// scripts run at once over all handlers, and each handler runs at most one,
// so a slow handler holds at most one slot. A script running past Timeout
// gets SIGTERM, then SIGKILL after KillGrace, sent to its whole process group
// (it runs as the leader of a new one), so what it started dies with it. A
// script that exits normally may leave daemons behind; they are not killed.
// Non-zero exits and timeouts are logged with the tail of the script's
// stderr; the node carries on, and the batch is not retried.
//
// Nothing here can slow the replica: its listener only appends the update
// to a queue; matching, the content checks and the scripts run on the
// runner's goroutines.
//
// # Restarts: the cursor
//
// Each handler has a cursor in STATEDIR/handlers/, named by a hash of its
// GLOB=SCRIPT (so a new handler does not inherit another's): for every
// visible path its GLOB matches, a digest of the node (head entry, type,
// mode, mtime, size, content, link target) as of the last change the handler
// ran for, and the grants and revokes it was told about. It is updated after
// each batch (an appended journal line per change, one fsync; the journal is
// folded into an atomically replaced snapshot now and then and on Stop). On
// Start, each handler's cursor is compared with the current tree: what
// changed while the node was down fires once, as one change per path (create,
// write, mkdir, mode, link, revert, rename or delete, named as the view
// names them; grants and revokes that started to count), and nothing else —
// a restart does not re-fire what was handled. Several changes of one path
// while the node was down fire as one. A new handler (no cursor) fires
// nothing for the existing state and starts its cursor there, unless
// --handler-initial (Initial) asks for one batch describing the whole
// current state: a create, mkdir or link per matched path, marked
// "initial". Changes that were queued or held when the node stopped, and a
// batch whose script Stop had to kill, fire on the next start. A crash (not
// a clean Stop) between a script's end and its journal line fires that batch
// again.
package handlers
