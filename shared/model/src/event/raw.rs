//! The payload as read in one pass: its fields as raw JSON slices borrowed from the body, and
//! `events` unpacked into per-event slots by hand-written visitors that also record what a
//! misplaced value was instead (for the error message).

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

/// The payload's shared fields; unknown ones are skipped.
#[derive(Deserialize)]
pub(super) struct RawPayload<'a> {
    #[serde(borrow)]
    pub(super) peach_schema_version: Option<&'a RawValue>,
    #[serde(borrow)]
    pub(super) sent_timestamp: Option<&'a RawValue>,
    #[serde(borrow)]
    pub(super) session_start_timestamp: Option<&'a RawValue>,
    #[serde(borrow)]
    pub(super) user_id: Option<&'a RawValue>,
    #[serde(borrow)]
    pub(super) client: Option<&'a RawValue>,
    #[serde(borrow)]
    pub(super) events: Option<EventsField<'a>>,
}

/// The `events` field read in the same pass as the payload: the events when it is an array,
/// else what it was instead (for the error message).
pub(super) enum EventsField<'a> {
    List(Vec<EventSlot<'a>>),
    Other(&'static str),
}

/// One element of `events`, parsed in the same pass: an event object, or what it was instead.
pub(super) enum EventSlot<'a> {
    Event(RawEvent<'a>),
    NotObject(&'static str),
}

/// Visitor methods that answer the JSON kind of a scalar value as `$other(kind)`.
macro_rules! scalar_kinds {
    ($other:expr) => {
        fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
            Ok($other("a string"))
        }
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok($other("a boolean"))
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok($other("a number"))
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok($other("a number"))
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok($other("a number"))
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok($other("null"))
        }
    };
}

impl<'de: 'a, 'a> Deserialize<'de> for EventsField<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for V<'a> {
            type Value = EventsField<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an array of events")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(16).min(1024));
                while let Some(item) = seq.next_element::<EventSlot<'de>>()? {
                    items.push(item);
                }
                Ok(EventsField::List(items))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                while map
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(EventsField::Other("an object"))
            }
            scalar_kinds!(EventsField::Other);
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for EventSlot<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for V<'a> {
            type Value = EventSlot<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an event object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut ev = RawEvent::default();
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    let slot = match key.as_ref() {
                        "type" => &mut ev.event_type,
                        "id" => &mut ev.id,
                        "event_timestamp" => &mut ev.event_timestamp,
                        "context" => &mut ev.context,
                        "props" => &mut ev.props,
                        "metadata" => &mut ev.metadata,
                        _ => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                            continue;
                        }
                    };
                    *slot = Some(map.next_value::<&'de RawValue>()?);
                }
                Ok(EventSlot::Event(ev))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(EventSlot::NotObject("an array"))
            }
            scalar_kinds!(EventSlot::NotObject);
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

#[derive(Deserialize)]
pub(super) struct RawClient<'a> {
    #[serde(borrow)]
    pub(super) id: Option<&'a RawValue>,
    #[serde(borrow)]
    pub(super) app_id: Option<&'a RawValue>,
    #[serde(borrow, rename = "type")]
    pub(super) client_type: Option<&'a RawValue>,
    #[serde(borrow)]
    pub(super) name: Option<&'a RawValue>,
    #[serde(borrow)]
    pub(super) version: Option<&'a RawValue>,
    #[serde(borrow)]
    pub(super) device: Option<&'a RawValue>,
    #[serde(borrow)]
    pub(super) os: Option<&'a RawValue>,
}

#[derive(Deserialize)]
pub(super) struct RawDevice<'a> {
    #[serde(borrow, rename = "type")]
    pub(super) device_type: Option<&'a RawValue>,
}

/// The fields of one event, as raw JSON (read by [`EventSlot`]'s single-pass visitor).
#[derive(Default)]
pub(super) struct RawEvent<'a> {
    pub(super) event_type: Option<&'a RawValue>,
    pub(super) id: Option<&'a RawValue>,
    pub(super) event_timestamp: Option<&'a RawValue>,
    pub(super) context: Option<&'a RawValue>,
    pub(super) props: Option<&'a RawValue>,
    pub(super) metadata: Option<&'a RawValue>,
}

impl RawEvent<'_> {
    /// The bytes of its fields' values: with the shared fields, the size of its output line.
    pub(super) fn raw_len(&self) -> usize {
        [
            self.event_type,
            self.id,
            self.event_timestamp,
            self.context,
            self.props,
            self.metadata,
        ]
        .iter()
        .flatten()
        .map(|r| r.get().len())
        .sum()
    }
}
