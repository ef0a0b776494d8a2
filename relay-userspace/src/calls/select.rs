//! Which interface address a party's ports go on, as rtpengine chooses a
//! logical interface: by name (`direction`), through an alias, by default
//! the first interface with an address of the family wanted, and in turn
//! among a `BASE:SUFFIX` round-robin group (or every interface, for the
//! `round-robin-calls` keyword).
//!
//! An interface's addresses are [`Interface`] entries sharing a name; of
//! each family the first is the one media uses (rtpengine offers the
//! others only as ICE candidates, which relayd does not generate).
//! Resolving a name ([`Selector::resolve`]) can fail and changes nothing;
//! picking ([`Selector::pick`]) moves a round-robin group on, so it is
//! done only for a party that gets its interface now, in rtpengine's
//! order (the recipient of an offer first, then the offerer).

use std::collections::HashMap;

use super::{CallError, Family, Interface};
use crate::interfaces::{round_robin_base, InterfaceAlias, ROUND_ROBIN_ALL};

/// A resolved name: one address, or a group to take the next of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Choice {
    /// This entry of the interface list.
    Fixed(usize),
    /// The next member of a round-robin group with room.
    RoundRobin {
        /// BASE (or [`ROUND_ROBIN_ALL`]).
        group: String,
        /// The family its members are taken in.
        family: Family,
    },
}

/// Aliases and the round-robin position of each group and family.
#[derive(Debug, Default)]
pub(super) struct Selector {
    aliases: HashMap<String, String>,
    next: HashMap<(String, Family), usize>,
}

impl Selector {
    /// A selector knowing `aliases` (checked at configuration: each names
    /// an interface and clashes with no name).
    pub(super) fn new(aliases: &[InterfaceAlias]) -> Self {
        Selector {
            aliases: aliases
                .iter()
                .map(|a| (a.alias.clone(), a.name.clone()))
                .collect(),
            next: HashMap::new(),
        }
    }

    /// What `name` (unset or empty: the default) means for a party
    /// wanting `family`. A name without an address of that family serves
    /// in another, unless `required` (`address-family` was asked for).
    /// rtpengine falls back to the default for a name it does not have,
    /// so a proxy's typo costs a log line, not calls.
    pub(super) fn resolve(
        &self,
        interfaces: &[Interface],
        name: Option<&str>,
        family: Option<Family>,
        required: bool,
    ) -> Result<Choice, CallError> {
        let Some(name) = name.filter(|n| !n.is_empty()) else {
            return default_choice(interfaces, family, required);
        };
        if let Some(target) = self.aliases.get(name) {
            return exact(interfaces, target, family, required);
        }
        if let Some(choice) = group_choice(interfaces, name, family, required)? {
            return Ok(choice);
        }
        if interfaces.iter().any(|i| i.spec.name == name) {
            return exact(interfaces, name, family, required);
        }
        tracing::warn!(interface = %name, "unknown interface asked for; using the default");
        default_choice(interfaces, family, required)
    }

    /// The entry `choice` stands for now: a round-robin group's next
    /// member with a free port pair (rtpengine skips full ones), moving
    /// the group on past it.
    pub(super) fn pick(&mut self, interfaces: &[Interface], choice: Choice) -> usize {
        let (group, family) = match choice {
            Choice::Fixed(i) => return i,
            Choice::RoundRobin { group, family } => (group, family),
        };
        let members = members(interfaces, &group, family);
        let Some(&first) = members.first() else {
            return 0;
        };
        let next = self.next.entry((group, family)).or_default();
        for _ in 0..members.len() {
            let i = members[*next % members.len()];
            *next = (*next + 1) % members.len();
            if interfaces[i].pool.free() > 0 {
                return i;
            }
        }
        // None has room: the allocation says so ("Ran out of ports").
        first
    }
}

/// `name` itself: its first address of `family`, else its first address.
pub(super) fn exact(
    interfaces: &[Interface],
    name: &str,
    family: Option<Family>,
    required: bool,
) -> Result<Choice, CallError> {
    let mut named = interfaces
        .iter()
        .enumerate()
        .filter(|(_, i)| i.spec.name == name);
    let first = named.clone().next().map_or(0, |(i, _)| i);
    let Some(family) = family else {
        return Ok(Choice::Fixed(first));
    };
    match named.find(|(_, i)| Family::of(i.spec.address) == family) {
        Some((i, _)) => Ok(Choice::Fixed(i)),
        None if required => Err(CallError::NoSuchFamily {
            name: name.to_owned(),
            family,
        }),
        None => Ok(Choice::Fixed(first)),
    }
}

/// No name: the first interface with an address of `family` (the first
/// interface without one), round-robin over its group if it is
/// `BASE:SUFFIX`.
fn default_choice(
    interfaces: &[Interface],
    family: Option<Family>,
    required: bool,
) -> Result<Choice, CallError> {
    let of_family =
        family.and_then(|f| interfaces.iter().find(|i| Family::of(i.spec.address) == f));
    let Some(default) = of_family.or(interfaces.first()) else {
        return Ok(Choice::Fixed(0));
    };
    let name = default.spec.name.as_str();
    let base = round_robin_base(name);
    if base != name {
        if let Some(choice) = group_choice(interfaces, base, family, required)? {
            return Ok(choice);
        }
    }
    exact(interfaces, name, family, required)
}

/// Round-robin group `group` (or a plain name, a group of one) in
/// `family`, else in another; None when no interface belongs to it.
fn group_choice(
    interfaces: &[Interface],
    group: &str,
    family: Option<Family>,
    required: bool,
) -> Result<Option<Choice>, CallError> {
    let families = match family {
        Some(Family::Ip4) => [Family::Ip4, Family::Ip6],
        Some(Family::Ip6) => [Family::Ip6, Family::Ip4],
        None => [Family::Ip4, Family::Ip6],
    };
    for fam in families {
        let members = members(interfaces, group, fam);
        let Some(&only) = members.first() else {
            continue;
        };
        if let Some(asked) = family.filter(|f| required && *f != fam) {
            return Err(CallError::NoSuchFamily {
                name: group.to_owned(),
                family: asked,
            });
        }
        return Ok(Some(if members.len() == 1 {
            Choice::Fixed(only)
        } else {
            Choice::RoundRobin {
                group: group.to_owned(),
                family: fam,
            }
        }));
    }
    Ok(None)
}

/// The interfaces of `group` with an address of `family`, each as the
/// entry of its first such address, in the order given.
fn members(interfaces: &[Interface], group: &str, family: Family) -> Vec<usize> {
    let mut names: Vec<&str> = Vec::new();
    let mut out = Vec::new();
    for (i, iface) in interfaces.iter().enumerate() {
        let name = iface.spec.name.as_str();
        let in_group = group == ROUND_ROBIN_ALL || round_robin_base(name) == group;
        if in_group && Family::of(iface.spec.address) == family && !names.contains(&name) {
            names.push(name);
            out.push(i);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{interfaces::InterfaceSet, ports::PortPool};

    fn set(values: &[&str]) -> (Vec<Interface>, Selector) {
        let set = InterfaceSet::parse(values).unwrap();
        let interfaces = set
            .specs
            .into_iter()
            .map(|spec| Interface {
                pool: PortPool::new(spec.address, 47990, 47993).unwrap(),
                spec,
            })
            .collect();
        (interfaces, Selector::new(&set.aliases))
    }

    fn pick(
        s: &mut Selector,
        ifs: &[Interface],
        name: Option<&str>,
        family: Option<Family>,
    ) -> String {
        let choice = s.resolve(ifs, name, family, false).unwrap();
        let i = s.pick(ifs, choice);
        ifs[i].spec.address.to_string()
    }

    const V4: Option<Family> = Some(Family::Ip4);
    const V6: Option<Family> = Some(Family::Ip6);

    #[test]
    fn first_address_of_a_family_serves() {
        let (ifs, mut s) = set(&["10.0.0.1", "10.0.0.2", "2001:db8::1", "2001:db8::2"]);
        for _ in 0..3 {
            assert_eq!(pick(&mut s, &ifs, None, V4), "10.0.0.1");
            assert_eq!(pick(&mut s, &ifs, Some("default"), V4), "10.0.0.1");
            assert_eq!(pick(&mut s, &ifs, None, V6), "2001:db8::1");
        }
    }

    #[test]
    fn default_is_the_first_interface_of_the_family() {
        let (ifs, mut s) = set(&["v6/2001:db8::1", "pub/10.0.0.1", "priv/10.0.0.2"]);
        assert_eq!(pick(&mut s, &ifs, None, V4), "10.0.0.1");
        assert_eq!(pick(&mut s, &ifs, None, V6), "2001:db8::1");
        // A name without the family serves in the other.
        assert_eq!(pick(&mut s, &ifs, Some("priv"), V6), "10.0.0.2");
        assert!(matches!(
            s.resolve(&ifs, Some("priv"), V6, true),
            Err(CallError::NoSuchFamily { .. })
        ));
    }

    #[test]
    fn round_robin_groups_take_turns_per_family() {
        let (ifs, mut s) = set(&[
            "pub:1/10.0.0.1",
            "pub:2/10.0.0.2",
            "pub:2/2001:db8::2",
            "priv/10.0.1.1",
        ]);
        let turns: Vec<_> = (0..4)
            .map(|_| pick(&mut s, &ifs, Some("pub"), V4))
            .collect();
        assert_eq!(turns, ["10.0.0.1", "10.0.0.2", "10.0.0.1", "10.0.0.2"]);
        // Only pub:2 has IPv6: a group of one.
        assert_eq!(pick(&mut s, &ifs, Some("pub"), V6), "2001:db8::2");
        // Members by full name, and the default (pub:1) means the group.
        assert_eq!(pick(&mut s, &ifs, Some("pub:2"), V4), "10.0.0.2");
        assert_eq!(pick(&mut s, &ifs, None, V4), "10.0.0.1");
        assert_eq!(pick(&mut s, &ifs, Some("nosuch"), V4), "10.0.0.2");
        // Every interface of the family in turn.
        let all: Vec<_> = (0..3)
            .map(|_| pick(&mut s, &ifs, Some(ROUND_ROBIN_ALL), V4))
            .collect();
        assert_eq!(all, ["10.0.0.1", "10.0.0.2", "10.0.1.1"]);
    }

    #[test]
    fn round_robin_skips_full_interfaces() {
        let (mut ifs, mut s) = set(&["pub:1/127.0.0.1", "pub:2/127.0.0.2"]);
        // Taken (the sockets close; the pool keeps the pairs until released).
        for _ in 0..2 {
            let _ = ifs[0].pool.allocate();
        }
        assert_eq!(ifs[0].pool.free(), 0);
        for _ in 0..3 {
            assert_eq!(pick(&mut s, &ifs, Some("pub"), V4), "127.0.0.2");
        }
    }

    #[test]
    fn aliases_stand_for_their_interface() {
        let (ifs, mut s) = set(&["pub1/10.0.0.1", "priv/10.0.1.1", "ext=pub1", "int=priv"]);
        assert_eq!(pick(&mut s, &ifs, Some("ext"), V4), "10.0.0.1");
        assert_eq!(pick(&mut s, &ifs, Some("int"), V4), "10.0.1.1");
    }
}
