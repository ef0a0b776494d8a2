//! [`Replicated`]: the [`Store`] of an active relayd with `--redis`: the
//! local journal as before (synchronous: a reply waits for it), and every
//! change handed to the [`Feed`] too (asynchronous: a reply never waits
//! on Redis).

use std::sync::Arc;

use super::Feed;
use crate::{Change, FlushJob, LoadReport, State, Store, StoreError};

/// A local store (or none, `--no-state`) teed into a Redis feed.
#[derive(Debug)]
pub struct Replicated {
    local: Option<Box<dyn Store + Send>>,
    feed: Arc<Feed>,
}

impl Replicated {
    /// Tees `local` (None: Redis only) into `feed`.
    pub fn new(local: Option<Box<dyn Store + Send>>, feed: Arc<Feed>) -> Self {
        Replicated { local, feed }
    }
}

impl Store for Replicated {
    /// The feed first: a local failure must not cost Redis the change.
    fn commit(&mut self, changes: &[Change]) -> Result<(), StoreError> {
        self.feed.push(changes);
        match &mut self.local {
            Some(local) => local.commit(changes),
            None => Ok(()),
        }
    }

    /// What the local store holds; Redis is written, never read, by an
    /// active relayd.
    fn load(&mut self) -> Result<(State, LoadReport), StoreError> {
        match &mut self.local {
            Some(local) => local.load(),
            None => Ok((State::default(), LoadReport::default())),
        }
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        match &mut self.local {
            Some(local) => local.sync(),
            None => Ok(()),
        }
    }

    fn flush_job(&mut self) -> Result<Option<FlushJob>, StoreError> {
        match &mut self.local {
            Some(local) => local.flush_job(),
            None => Ok(None),
        }
    }

    fn clear(&mut self) -> Result<(), StoreError> {
        self.feed.clear();
        match &mut self.local {
            Some(local) => local.clear(),
            None => Ok(()),
        }
    }
}
