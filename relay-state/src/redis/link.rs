//! Connecting to Redis, and telling a misconfiguration (wrong password,
//! a database Redis will not select) from an outage: the first must stop
//! relayd at start-up, the second never does.

use std::time::Duration;

use redis::{Connection, ErrorKind, IntoConnectionInfo as _, RedisConnectionInfo, RedisError};

use super::RedisTarget;

/// How long a connection attempt may take (rtpengine's
/// `--redis-connect-timeout` default).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long one command may wait for its reply before the link counts as
/// down: a black-holed server must not hold the writer forever.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// Why Redis cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// Redis refused the password, or wants one and none was given.
    #[error("Redis at {target} refused the login: {detail} (the password is the PASSWORD@ part of --redis, or {env})", env = super::PASSWORD_ENV)]
    Auth {
        /// `HOST:PORT/DB`.
        target: String,
        /// What Redis said.
        detail: String,
    },
    /// Redis refused to select the database.
    #[error("Redis at {target} refused the database number: {detail}")]
    Db {
        /// `HOST:PORT/DB`.
        target: String,
        /// What Redis said.
        detail: String,
    },
    /// Redis cannot be reached or failed (worth retrying).
    #[error("Redis at {target} unavailable: {detail}")]
    Down {
        /// `HOST:PORT/DB`.
        target: String,
        /// The error.
        detail: String,
    },
}

impl LinkError {
    /// Whether this is the configuration's fault, not an outage: retrying
    /// will not help, and relayd refuses to start on it.
    pub fn is_config(&self) -> bool {
        !matches!(self, LinkError::Down { .. })
    }

    /// Classifies a Redis error met talking to `target`.
    pub fn of(target: &RedisTarget, e: &RedisError) -> Self {
        let target = target.to_string();
        let detail = e.to_string();
        let auth = e.kind() == ErrorKind::AuthenticationFailed
            || matches!(e.code(), Some("NOAUTH" | "WRONGPASS"));
        if auth {
            LinkError::Auth { target, detail }
        } else if detail.contains("switch database") || detail.contains("DB index") {
            LinkError::Db { target, detail }
        } else {
            LinkError::Down { target, detail }
        }
    }
}

/// A connection to `target`: logged in, its database selected, and
/// proven by a `PING` (a server wanting a password it was not given only
/// says so on the first command).
pub fn connect(target: &RedisTarget) -> Result<Connection, LinkError> {
    let fail = |e: RedisError| LinkError::of(target, &e);
    let mut settings = RedisConnectionInfo::default()
        .set_db(i64::from(target.db))
        .set_skip_set_lib_name();
    if let Some(password) = &target.password {
        settings = settings.set_password(password);
    }
    let info = (target.host.as_str(), target.port)
        .into_connection_info()
        .map_err(fail)?
        .set_redis_settings(settings);
    let mut con = redis::Client::open(info)
        .map_err(fail)?
        .get_connection_with_timeout(CONNECT_TIMEOUT)
        .map_err(fail)?;
    con.set_read_timeout(Some(COMMAND_TIMEOUT)).map_err(fail)?;
    con.set_write_timeout(Some(COMMAND_TIMEOUT)).map_err(fail)?;
    redis::cmd("PING").query::<()>(&mut con).map_err(fail)?;
    Ok(con)
}

/// Checks `target` once, for start-up: `Ok` when it answers, a
/// configuration error ([`LinkError::is_config`]) when it refuses the
/// login or database, [`LinkError::Down`] when it cannot be reached.
pub fn probe(target: &RedisTarget) -> Result<(), LinkError> {
    connect(target).map(drop)
}

/// Waits before the next connection attempt: 100 ms, doubling up to
/// 1.6 s, so a Redis that comes back is found again within two seconds.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: u32,
}

impl Backoff {
    /// The wait after one more failure.
    pub fn wait(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        Duration::from_millis(100u64 << (self.failures.min(5) - 1))
    }

    /// A connection worked: start from the shortest wait again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_1600_ms() {
        let mut b = Backoff::default();
        let waits: Vec<u64> = (0..7).map(|_| b.wait().as_millis() as u64).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1600, 1600, 1600]);
        b.reset();
        assert_eq!(b.wait(), Duration::from_millis(100));
    }
}
