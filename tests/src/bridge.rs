//! One Ethernet segment (a Linux bridge in a namespace of its own) with
//! hosts on it, each in its own namespace: the shape of an active/standby
//! relay pair with its media endpoints, where an address can move from one
//! host to another.
//!
//! ```text
//!          ns <tag>sw: br0 10.30.0.1/24 (services: Redis)
//!            |            |            |            |
//!   host eth0 10.30.0.x/24, one namespace each (endpoints, relays)
//! ```

use anyhow::Result;

use crate::netns::{veth, Netns};

/// The segment's prefix length.
pub const PREFIX: u8 = 24;
/// The bridge's own address (for services every host reaches).
pub const SWITCH_ADDR: &str = "10.30.0.1";

/// The bridge namespace; hosts are added with [`Lan::host`].
#[derive(Debug)]
pub struct Lan {
    /// The namespace of the bridge (and of its services).
    pub switch: Netns,
    tag: String,
    hosts: u8,
}

impl Lan {
    /// A bridge `br0` in `<tag>sw`, up, with [`SWITCH_ADDR`].
    pub fn new(tag: &str) -> Result<Self> {
        let switch = Netns::new(&format!("{tag}sw"))?;
        switch.ip(&["link", "add", "br0", "type", "bridge"])?;
        switch.ip(&[
            "addr",
            "add",
            &format!("{SWITCH_ADDR}/{PREFIX}"),
            "dev",
            "br0",
        ])?;
        switch.ip(&["link", "set", "br0", "up"])?;
        Ok(Lan {
            switch,
            tag: tag.to_owned(),
            hosts: 0,
        })
    }

    /// A new namespace `<tag><name>` with `eth0` at `addr` (`10.30.0.x`,
    /// without prefix) on the bridge, MAC `02:00:00:30:00:NN`.
    pub fn host(&mut self, name: &str, addr: &str) -> Result<Netns> {
        self.hosts += 1;
        let ns = Netns::new(&format!("{}{name}", self.tag))?;
        let port = format!("p{}", self.hosts);
        let mac = format!("02:00:00:30:00:{:02x}", self.hosts);
        let port_mac = format!("02:00:00:30:01:{:02x}", self.hosts);
        let cidr = format!("{addr}/{PREFIX}");
        veth(
            ns.end("eth0", &cidr, &mac),
            self.switch.end(&port, "", &port_mac),
        )?;
        self.switch.ip(&["link", "set", &port, "master", "br0"])?;
        Ok(ns)
    }
}

/// The MAC [`Lan::host`] gave the `n`th host (from 1).
pub fn host_mac(n: u8) -> String {
    format!("02:00:00:30:00:{n:02x}")
}
