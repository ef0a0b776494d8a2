//! `--redis=[PASSWORD@]HOST:PORT/DB`, read as rtpengine reads its
//! `--redis`: the password is everything before the last `@` (so a
//! password may itself hold `@`), the database number everything after
//! the first `/` that follows; without an `@` the password may come from
//! the environment (rtpengine's `RTPENGINE_REDIS_AUTH_PW`).

use std::fmt;

/// The environment variable rtpengine reads the `--redis` password from
/// when the value has none; relayd reads the same one, so a drop-in
/// configuration keeps working.
pub const PASSWORD_ENV: &str = "RTPENGINE_REDIS_AUTH_PW";

/// Where replicated call state lives: one Redis database.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisTarget {
    /// Host name or IP address (an IPv6 one without its brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Database number (`SELECT`).
    pub db: u32,
    /// `AUTH` password, if the server wants one.
    pub password: Option<String>,
}

/// A `--redis` value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// No `/DB` at the end.
    #[error("no database number: expected [PASSWORD@]HOST:PORT/DB, e.g. 127.0.0.1:6379/1")]
    NoDb,
    /// `DB` is not a non-negative decimal number.
    #[error("database number {0:?} is not a number from 0 up")]
    BadDb(String),
    /// No `:PORT`.
    #[error("no port: expected [PASSWORD@]HOST:PORT/DB, e.g. 127.0.0.1:6379/1")]
    NoPort,
    /// `PORT` is not 1–65535.
    #[error("port {0:?} is not a number from 1 to 65535")]
    BadPort(String),
    /// Nothing before `:PORT`.
    #[error("no host before the port")]
    NoHost,
    /// An IPv6 address without brackets (its colons hide the port).
    #[error("IPv6 address {0:?} needs brackets: [ADDRESS]:PORT/DB")]
    BareIpv6(String),
    /// `@` with nothing before it.
    #[error("empty password before '@' (leave out the '@' for none)")]
    EmptyPassword,
}

impl RedisTarget {
    /// Parses a `--redis` value; `env_password` is the value of
    /// [`PASSWORD_ENV`], used when the text has no password.
    pub fn parse(text: &str, env_password: Option<String>) -> Result<Self, TargetError> {
        let (password, rest) = match text.rsplit_once('@') {
            Some(("", _)) => return Err(TargetError::EmptyPassword),
            Some((password, rest)) => (Some(password.to_owned()), rest),
            None => (env_password.filter(|p| !p.is_empty()), text),
        };
        let (endpoint, db) = rest.split_once('/').ok_or(TargetError::NoDb)?;
        if db.is_empty() {
            return Err(TargetError::NoDb);
        }
        let db = match db.bytes().all(|b| b.is_ascii_digit()) {
            true => db.parse().map_err(|_| TargetError::BadDb(db.into()))?,
            false => return Err(TargetError::BadDb(db.into())),
        };
        let (host, port) = endpoint.rsplit_once(':').ok_or(TargetError::NoPort)?;
        let port = match port.parse::<u16>() {
            Ok(p) if p > 0 && port.bytes().all(|b| b.is_ascii_digit()) => p,
            _ => return Err(TargetError::BadPort(port.into())),
        };
        let host = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            Some(v6) if v6.parse::<std::net::Ipv6Addr>().is_ok() => v6,
            Some(_) => return Err(TargetError::BareIpv6(host.into())),
            None if host.contains(':') => return Err(TargetError::BareIpv6(host.into())),
            None => host,
        };
        if host.is_empty() {
            return Err(TargetError::NoHost);
        }
        Ok(RedisTarget {
            host: host.to_owned(),
            port,
            db,
            password,
        })
    }
}

impl fmt::Display for RedisTarget {
    /// `HOST:PORT/DB`, never the password (it goes into logs).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host.contains(':') {
            true => write!(f, "[{}]:{}/{}", self.host, self.port, self.db),
            false => write!(f, "{}:{}/{}", self.host, self.port, self.db),
        }
    }
}

impl fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisTarget")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("db", &self.db)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> RedisTarget {
        RedisTarget::parse(text, None).unwrap()
    }

    #[test]
    fn reads_rtpengine_syntax() {
        let t = ok("127.0.0.1:6379/12");
        assert_eq!((t.host.as_str(), t.port, t.db), ("127.0.0.1", 6379, 12));
        assert_eq!(t.password, None);
        let t = ok("foobar@127.0.0.1:6379/0");
        assert_eq!(t.password.as_deref(), Some("foobar"));
        // rtpengine splits at the last '@': passwords may hold one.
        assert_eq!(ok("a@b@redis.example:1/3").password.as_deref(), Some("a@b"));
        assert_eq!(ok("redis.example:1/3").host, "redis.example");
        let t = ok("[2001:db8::7]:6380/1");
        assert_eq!((t.host.as_str(), t.port), ("2001:db8::7", 6380));
        assert_eq!(t.to_string(), "[2001:db8::7]:6380/1");
    }

    #[test]
    fn the_environment_gives_a_password_only_when_the_value_has_none() {
        let env = || Some("fromenv".to_owned());
        let t = RedisTarget::parse("127.0.0.1:6379/1", env()).unwrap();
        assert_eq!(t.password.as_deref(), Some("fromenv"));
        let t = RedisTarget::parse("mine@127.0.0.1:6379/1", env()).unwrap();
        assert_eq!(t.password.as_deref(), Some("mine"));
    }

    #[test]
    fn malformed_values_say_what_is_wrong() {
        let err = |text| RedisTarget::parse(text, None).unwrap_err();
        assert_eq!(err("127.0.0.1:6379"), TargetError::NoDb);
        assert_eq!(err("127.0.0.1:6379/"), TargetError::NoDb);
        assert_eq!(err("127.0.0.1:6379/x"), TargetError::BadDb("x".into()));
        assert_eq!(err("127.0.0.1:6379/-1"), TargetError::BadDb("-1".into()));
        assert_eq!(err("127.0.0.1:6379/+1"), TargetError::BadDb("+1".into()));
        assert_eq!(err("127.0.0.1/1"), TargetError::NoPort);
        assert_eq!(err("127.0.0.1:0/1"), TargetError::BadPort("0".into()));
        assert_eq!(
            err("127.0.0.1:70000/1"),
            TargetError::BadPort("70000".into())
        );
        assert_eq!(err(":6379/1"), TargetError::NoHost);
        assert_eq!(err("::1:6379/1"), TargetError::BareIpv6("::1".into()));
        assert_eq!(err("[nope]:6379/1"), TargetError::BareIpv6("[nope]".into()));
        assert_eq!(err("@127.0.0.1:6379/1"), TargetError::EmptyPassword);
    }

    #[test]
    fn the_password_stays_out_of_logs() {
        let t = ok("s3cret@127.0.0.1:6379/2");
        assert_eq!(t.to_string(), "127.0.0.1:6379/2");
        assert!(!format!("{t:?}").contains("s3cret"));
    }
}
