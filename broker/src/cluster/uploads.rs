//! Which partitions this node is uploading to the archive, so that a graceful leadership
//! transfer lets the upload in flight finish first (the next leader then starts from a root
//! that holds it, instead of uploading the segment again) and no new upload starts while a
//! transfer waits. A transfer waits a bounded time: an upload that hangs on the bucket does not
//! hold a leadership hostage.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use crate::raft::GroupId;

/// How long a graceful transfer waits for an upload under way.
pub const HAND_OVER_WAIT: Duration = Duration::from_secs(10);

/// Uploads under way and transfers waiting, per Raft group.
#[derive(Debug, Default)]
pub struct Uploads {
    state: Mutex<State>,
    idle: Notify,
}

#[derive(Debug, Default)]
struct State {
    uploading: HashMap<GroupId, usize>,
    handing_over: HashSet<GroupId>,
}

/// An upload under way: it ends when this drops.
#[derive(Debug)]
pub struct Upload {
    uploads: Arc<Uploads>,
    group: GroupId,
}

impl Drop for Upload {
    fn drop(&mut self) {
        {
            let mut state = self.uploads.lock();
            if let Some(count) = state.uploading.get_mut(&self.group) {
                *count -= 1;
                if *count == 0 {
                    state.uploading.remove(&self.group);
                }
            }
        }
        self.uploads.idle.notify_waiters();
    }
}

/// A transfer under way: uploads of its group wait until this drops.
#[derive(Debug)]
pub struct HandOver {
    uploads: Arc<Uploads>,
    group: GroupId,
    /// True when it waited for an upload to finish.
    pub waited: bool,
}

impl Drop for HandOver {
    fn drop(&mut self) {
        self.uploads.lock().handing_over.remove(&self.group);
    }
}

impl Uploads {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts an upload of `group`, unless its leadership is being handed over.
    pub fn begin(self: &Arc<Self>, group: GroupId) -> Option<Upload> {
        let mut state = self.lock();
        if state.handing_over.contains(&group) {
            return None;
        }
        *state.uploading.entry(group).or_default() += 1;
        Some(Upload {
            uploads: self.clone(),
            group,
        })
    }

    /// True while `group`'s leadership is being handed over (uploads stop at the next
    /// segment).
    pub fn handing_over(&self, group: GroupId) -> bool {
        self.lock().handing_over.contains(&group)
    }

    /// Starts handing `group` over: no upload begins from now until the result drops, and
    /// this waits (at most `timeout`) for the ones under way. `None` when a hand-over of the
    /// group is under way already.
    pub async fn hand_over(
        self: &Arc<Self>,
        group: GroupId,
        timeout: Duration,
    ) -> Option<HandOver> {
        if !self.lock().handing_over.insert(group) {
            return None;
        }
        let mut hand_over = HandOver {
            uploads: self.clone(),
            group,
            waited: false,
        };
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !self.lock().uploading.contains_key(&group) {
                return Some(hand_over);
            }
            hand_over.waited = true;
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                tracing::info!(
                    group,
                    "an upload is still under way after {timeout:?}: handing the leadership over anyway"
                );
                return Some(hand_over);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_hand_over_waits_for_the_upload_under_way_and_stops_new_ones() {
        let uploads = Arc::new(Uploads::default());
        let upload = uploads.begin(7).expect("nothing handed over");
        let other = uploads.begin(8).expect("another group");
        let waiting = tokio::spawn({
            let uploads = uploads.clone();
            async move { uploads.hand_over(7, Duration::from_secs(10)).await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiting.is_finished(), "the upload of group 7 is under way");
        assert!(
            uploads.begin(7).is_none(),
            "no new upload while handing over"
        );
        assert!(uploads.handing_over(7) && !uploads.handing_over(8));
        assert!(
            uploads.hand_over(7, Duration::ZERO).await.is_none(),
            "one hand-over at a time"
        );
        drop(other);
        tokio::task::yield_now().await;
        assert!(
            !waiting.is_finished(),
            "another group's upload does not count"
        );
        drop(upload);
        let hand_over = waiting.await.unwrap().expect("handed over");
        assert!(hand_over.waited);
        drop(hand_over);
        assert!(
            uploads.begin(7).is_some(),
            "uploads resume after the hand-over"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_upload_holds_a_hand_over_only_until_the_timeout() {
        let uploads = Arc::new(Uploads::default());
        let _hung = uploads.begin(3).expect("nothing handed over");
        let started = tokio::time::Instant::now();
        let hand_over = uploads
            .hand_over(3, Duration::from_secs(10))
            .await
            .expect("handed over");
        assert!(hand_over.waited);
        assert_eq!(started.elapsed(), Duration::from_secs(10));
        let idle = uploads.hand_over(4, Duration::from_secs(10)).await.unwrap();
        assert!(!idle.waited, "nothing to wait for");
    }
}
