//! The only module with `unsafe` and raw libc calls. Everything above this layer works with owned and
//! borrowed fds and plain byte slices; the rest of the crate imports what it needs from here, never from
//! the files below:
//! - `group`: the fanotify group (created or adopted, its marks, reading events, answering them);
//! - `event`: [`Event`]s parsed from the bytes read(2) returns, each owning its fd, the typed [`Mask`], the
//!   [`Response`] and the [`Responder`] that writes it;
//! - `file`: the fd queries the decision path needs ([`file_facts`] by statx, [`read_head`], the event fd's name
//!   by readlink of /proc/self/fd/N, through [`ProcDirs`]: /proc opened once);
//! - `ns`: joining the host's mount namespace from a container ([`enter_mount_namespace_of`]);
//! - `dirwatch`: the directory watch ([`DirWatch`], a notification group reporting new directories by file
//!   handle) and the handle calls ([`dir_key`], [`open_dir_by_key`]);
//! - `fdpass`: one fd sent or received over a Unix socket (`SCM_RIGHTS`, the hand-over to `noexecd hold`);
//! - `pidfd`: a task's real uid through a pidfd ([`real_uid`], `PIDFD_GET_INFO`, Linux 6.13);
//! - `wake`: waking the decision thread out of its blocking read on the group ([`wake_thread`], [`Waker`] from
//!   another thread: a signal whose handler does nothing, installed without `SA_RESTART`);
//! - `fd`: the process's own fds (those systemd hands over through `LISTEN_FDS`, [`is_fanotify`],
//!   [`raise_nofile_limit`]).
//!
//! Every `unsafe` block carries a `SAFETY:` comment naming the invariant it relies on; every `unsafe fn`
//! has a `# Safety` section and is private to this module.
#![allow(unsafe_code)]

mod dirwatch;
mod event;
mod fd;
mod fdpass;
mod file;
mod group;
mod ns;
mod pidfd;
mod wake;

pub use dirwatch::{DirEvent, DirKey, DirWatch, dir_key, fsid, open_dir_by_key};
#[cfg(test)]
pub use event::parse_header_for_tests;
pub use event::{Event, Mask, Responder, Response};
pub use fd::{is_fanotify, raise_nofile_limit, take_listen_fds};
pub use fdpass::{recv_with_fd, send_with_fd};
pub use file::{FileFacts, PATH_BUF_LEN, ProcDirs, file_facts, mount_unique_id, path_facts, read_at, read_head};
pub use group::FanotifyGroup;
pub use ns::{ContainerRoot, Forked, enter_mount_namespace_of, fork_daemon};
pub use pidfd::{PidfdError, real_uid};
pub use wake::{Waker, accept_wake_signal, block_wake_signal, install_wake_handler, wake_thread};
