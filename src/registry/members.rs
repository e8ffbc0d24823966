//! A group's members (channel -> last seen), with a lone member stored inline.
//!
//! Most producer groups have exactly one member, and the incident's leaked groups all did: a
//! hash map for one entry is an 84-byte allocation, more than the rest of the group's entry. So
//! a single member lives in the group's own slot, and the map is allocated only for a second one.
//! Iteration order is unspecified, as a map's is; every caller that exposes members sorts them.

use crate::core::{ChannelId, Millis};
use rustc_hash::FxBuildHasher;

/// Members keyed by channel id. Ids are handed out by the registry, not chosen by clients, so a
/// fast non-keyed hasher is safe here.
type Map = hashbrown::HashMap<ChannelId, Millis, FxBuildHasher>;

/// The members of one group. The same size as the map alone: the map's non-null control pointer
/// is the niche that tells the variants apart.
pub(crate) enum Members {
    /// Exactly one member.
    One(ChannelId, Millis),
    /// Any number, none included (an empty map does not allocate). Not shrunk back to `One` on
    /// removal, so a group that goes between one and two members does not reallocate each time.
    Many(Map),
}

impl Default for Members {
    fn default() -> Self {
        Members::Many(Map::default())
    }
}

impl Members {
    /// When `ch` was last seen, if it is a member.
    pub(crate) fn get(&self, ch: ChannelId) -> Option<Millis> {
        match self {
            Members::One(c, seen) => (*c == ch).then_some(*seen),
            Members::Many(map) => map.get(&ch).copied(),
        }
    }

    /// Adds `ch` or refreshes it; returns its previous time if it was already a member.
    pub(crate) fn insert(&mut self, ch: ChannelId, now: Millis) -> Option<Millis> {
        match self {
            Members::One(c, seen) if *c == ch => Some(std::mem::replace(seen, now)),
            Members::One(c, seen) => {
                let mut map = Map::with_capacity_and_hasher(2, FxBuildHasher);
                map.insert(*c, *seen);
                map.insert(ch, now);
                *self = Members::Many(map);
                None
            }
            Members::Many(map) if map.is_empty() => {
                *self = Members::One(ch, now);
                None
            }
            Members::Many(map) => map.insert(ch, now),
        }
    }

    /// Removes `ch`; returns its time if it was a member.
    pub(crate) fn remove(&mut self, ch: ChannelId) -> Option<Millis> {
        match self {
            Members::One(c, seen) if *c == ch => {
                let seen = *seen;
                *self = Members::default();
                Some(seen)
            }
            Members::One(..) => None,
            Members::Many(map) => map.remove(&ch),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        match self {
            Members::One(..) => false,
            Members::Many(map) => map.is_empty(),
        }
    }

    /// Every (channel, last seen), in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (ChannelId, Millis)> + '_ {
        let (one, many) = match self {
            Members::One(c, seen) => (Some((*c, *seen)), None),
            Members::Many(map) => (None, Some(map.iter().map(|(c, seen)| (*c, *seen)))),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }

    /// Every member, in no particular order.
    pub(crate) fn channels(&self) -> impl Iterator<Item = ChannelId> + '_ {
        self.iter().map(|(c, _)| c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn no_bigger_than_the_map() {
        assert_eq!(size_of::<Members>(), size_of::<Map>());
    }

    /// Random operations agree with a `BTreeMap` at every step.
    #[test]
    fn behaves_as_a_map() {
        let mut m = Members::default();
        let mut model = BTreeMap::new();
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        for step in 0..100_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let ch = ChannelId(x % 5);
            let now = Millis(step);
            match (x >> 8) % 3 {
                0 => assert_eq!(m.remove(ch), model.remove(&ch)),
                _ => assert_eq!(m.insert(ch, now), model.insert(ch, now)),
            }
            assert_eq!(m.get(ch), model.get(&ch).copied());
            assert_eq!(m.is_empty(), model.is_empty());
            let mut seen: Vec<_> = m.iter().collect();
            seen.sort_unstable();
            assert_eq!(
                seen,
                model.iter().map(|(c, t)| (*c, *t)).collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn a_lone_member_is_inline() {
        let mut m = Members::default();
        assert_eq!(m.insert(ChannelId(1), Millis(1)), None);
        assert!(matches!(m, Members::One(ChannelId(1), Millis(1))));
        assert_eq!(m.insert(ChannelId(1), Millis(2)), Some(Millis(1)));
        assert!(matches!(m, Members::One(ChannelId(1), Millis(2))));
        assert_eq!(m.remove(ChannelId(1)), Some(Millis(2)));
        assert!(m.is_empty());
    }
}
