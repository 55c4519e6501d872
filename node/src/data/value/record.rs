//! The byte forms of a key's state: the stored record (versioned, with the
//! migrations of older formats, and canonical: equal states give equal
//! bytes, so anti-entropy compares hashes of stored bytes), and the opaque
//! clock contexts clients hold for sets and maps.

use super::{map, Body, Life, LwwState, SetState, Stamp, State};
use crate::data::register::{Actor, DecodeError, Register};
use crdts::{pncounter::PNCounter, VClock};
use serde::{Deserialize, Serialize};

/// Persisted form of a key's state. The enum tag is the format version.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum StoredRecord {
    /// Register-only records (before bucket types).
    V1(Register),
    /// Any bucket type, maps as `crdts::Map`s (converted when read).
    V2(LegacyState),
    /// Any bucket type, maps as [`MapState`](super::MapState)s. Written for maps only: the
    /// other types are laid out as in `V2` and still written as `V2`, so
    /// their stored bytes (and anti-entropy hashes) did not change.
    V3(Body),
    /// A state with a lifetime ([`Life`]): written only for those, so the
    /// records (and hashes) of keys without one did not change.
    V4(State),
}

/// [`StoredRecord`] by reference, so encoding does not copy the state
/// (serde writes a reference exactly like the value).
#[derive(Serialize)]
enum StoredRecordRef<'a> {
    #[allow(dead_code)] // only here to give `V2` and `V3` their tags
    V1(&'a Register),
    V2(&'a Body),
    V3(&'a Body),
    V4(&'a State),
}

/// A state in the layout of record format 2, whose `Map` variant was a
/// `crdts::Map`; the other variants are laid out as in [`State`]. Other
/// persisted forms that embedded a [`State`] (hints) decode their old
/// records with it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum LegacyState {
    Register(Register),
    Counter(PNCounter<Actor>),
    Set(SetState),
    Map(map::legacy::Map),
    Lww(LwwState),
}

impl LegacyState {
    /// The same state, a map converted to a [`MapState`](super::MapState) (see
    /// `map::legacy::Map::convert`).
    pub(crate) fn into_state(self) -> State {
        match self {
            LegacyState::Register(r) => Body::Register(r),
            LegacyState::Counter(c) => Body::Counter(c),
            LegacyState::Set(s) => Body::Set(s),
            LegacyState::Map(m) => Body::Map(m.convert()),
            LegacyState::Lww(r) => Body::Lww(r),
        }
        .into()
    }
}

/// The record of a state without canonicalization (sets hold `HashMap`s).
pub(super) fn plain_record(state: &State) -> Vec<u8> {
    let record = match &state.body {
        _ if !state.life.is_default() => StoredRecordRef::V4(state),
        body @ Body::Map(_) => StoredRecordRef::V3(body),
        body => StoredRecordRef::V2(body),
    };
    // Serializing plain data into a Vec cannot fail.
    kvorum_client::bytes::encode(&record)
}

/// Encodes a key's state for storage, canonically: equal states give equal
/// bytes whatever order their `HashMap`s iterate in.
pub fn encode_record(state: &State) -> Vec<u8> {
    let plain = plain_record(state);
    match state.body {
        // No hash maps inside: already canonical.
        Body::Register(_) | Body::Counter(_) | Body::Map(_) | Body::Lww(_) => plain,
        Body::Set(_) => match postcard::from_bytes::<canon::Record>(&plain) {
            Ok(mut mirror) => {
                mirror.sort();
                postcard::to_stdvec(&mirror).unwrap_or(plain)
            }
            // The mirror types are tested to match; fall back to the plain form.
            Err(_) => plain,
        },
    }
}

/// Decodes a stored record; a map record of format 2 is converted.
pub fn decode_record(bytes: &[u8]) -> Result<State, DecodeError> {
    match postcard::from_bytes::<StoredRecord>(bytes) {
        Ok(StoredRecord::V1(r)) => Ok(Body::Register(r).into()),
        Ok(StoredRecord::V2(s)) => Ok(s.into_state()),
        Ok(StoredRecord::V3(s)) => Ok(s.into()),
        Ok(StoredRecord::V4(s)) => Ok(s),
        Err(e) => Err(DecodeError::Malformed(e.to_string())),
    }
}

/// Whether a stored record is in the format [`encode_record`] writes for
/// its state. Only map records of format 2 are not (they are converted when
/// read); the replica rewrites them when it next merges into them, so that
/// replicas holding equal maps hold equal bytes again.
pub fn record_is_current(bytes: &[u8]) -> bool {
    // Postcard enum tags: `StoredRecord::V2` is 1, `State::Map` is 3.
    !matches!(bytes, [1, 3, ..])
}

/// Version byte of a set or map context (register contexts start with 1).
pub(super) const CLOCK_CONTEXT_VERSION: u8 = 2;

/// Encodes a set or map read's clock as the opaque bytes clients hold.
pub fn encode_clock(clock: &VClock<Actor>) -> Vec<u8> {
    if clock.is_empty() {
        return Vec::new();
    }
    let size = postcard::experimental::serialized_size(clock).unwrap_or(0);
    let mut out = Vec::with_capacity(1 + size);
    out.push(CLOCK_CONTEXT_VERSION);
    postcard::to_extend(clock, out).unwrap_or_else(|_| vec![CLOCK_CONTEXT_VERSION])
}

/// Decodes a set or map context; the empty byte string is the empty clock.
pub fn decode_clock(bytes: &[u8]) -> Result<VClock<Actor>, DecodeError> {
    match bytes.split_first() {
        None => Ok(VClock::new()),
        Some((&CLOCK_CONTEXT_VERSION, rest)) => {
            postcard::from_bytes(rest).map_err(|e| DecodeError::Malformed(e.to_string()))
        }
        Some((&v, _)) => Err(DecodeError::ContextVersion(v)),
    }
}

/// Mirrors of the stored records with every hash map (those of `crdts`
/// sets) as a sortable list. They serialize exactly like the originals
/// (postcard writes a map as a length and its pairs, a list of pairs the
/// same way), so sorting them gives the canonical bytes of the original.
pub(super) mod canon {
    use super::map::legacy::{Map as LegacyMap, Orswot};
    use super::{Actor, Life, Register, Stamp};
    use crdts::{lwwreg::LWWReg, pncounter::PNCounter};
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize)]
    pub(in crate::data::value) enum Record {
        V1(Register),
        V2(State),
        V3(super::Body),
        V4(Body, Life),
    }

    /// The current layout of a state's data ([`super::Body`]), sets
    /// sortable: the data of a `V4` record.
    #[derive(Serialize, Deserialize)]
    pub(in crate::data::value) enum Body {
        Register(Register),
        Counter(PNCounter<Actor>),
        Set(Orswot<Vec<u8>>),
        Map(super::map::MapState),
        Lww(LWWReg<Option<Vec<u8>>, Stamp>),
    }

    #[derive(Serialize, Deserialize)]
    pub(in crate::data::value) enum State {
        Register(Register),
        Counter(PNCounter<Actor>),
        Set(Orswot<Vec<u8>>),
        Map(LegacyMap),
        Lww(LWWReg<Option<Vec<u8>>, Stamp>),
    }

    impl Record {
        pub(super) fn sort(&mut self) {
            match self {
                Record::V2(State::Set(s)) | Record::V4(Body::Set(s), _) => s.sort(),
                _ => {}
            }
        }
    }
}
