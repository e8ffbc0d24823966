//! Deserializers that accept what the Java broker (fastjson) accepts: a number given as a string,
//! a boolean given as a number or a string, `null` for any field (its default), and an enum given
//! by name or by ordinal. Anything else is an error that names the field's expected type.

use serde::de::{self, Deserializer, Visitor};
use std::fmt;

/// `null`, `"s"`, `12` or `true` -> `String`.
pub(crate) fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = String;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_owned())
        }
        fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
            Ok(v)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_unit<E: de::Error>(self) -> Result<String, E> {
            Ok(String::new())
        }
    }
    d.deserialize_any(V)
}

/// 2^63, exactly: `i64::MAX as f64` rounds up to it, so it is the exclusive upper bound.
const TWO_63: f64 = (1u64 << 63) as f64;

/// `null`, `12`, `"12"` or `12.0` -> `i64`.
pub(crate) fn i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = i64;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an integer (or an integer in a string)")
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
            Ok(v)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
            i64::try_from(v).map_err(|_| E::custom(format!("integer {v} out of range")))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<i64, E> {
            if v.fract() == 0.0 && (-TWO_63..TWO_63).contains(&v) {
                Ok(v as i64)
            } else {
                Err(E::custom(format!("{v} is not an integer")))
            }
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<i64, E> {
            let t = v.trim();
            if t.is_empty() {
                return Ok(0);
            }
            t.parse()
                .map_err(|_| E::custom(format!("{v:?} is not an integer")))
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<i64, E> {
            Ok(i64::from(v))
        }
        fn visit_unit<E: de::Error>(self) -> Result<i64, E> {
            Ok(0)
        }
    }
    d.deserialize_any(V)
}

/// `null`, `true`, `1`, `"true"` or `"1"` -> `bool`.
pub(crate) fn bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = bool;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a boolean")
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
            Ok(v)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<bool, E> {
            Ok(v != 0)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<bool, E> {
            Ok(v != 0)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
            match v.trim() {
                "true" | "TRUE" | "True" | "1" => Ok(true),
                "false" | "FALSE" | "False" | "0" | "" => Ok(false),
                _ => Err(E::custom(format!("{v:?} is not a boolean"))),
            }
        }
        fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
            Ok(false)
        }
    }
    d.deserialize_any(V)
}

/// `null` or missing -> `"TAG"`, upstream's default expression type; otherwise a string.
pub(crate) fn expression_type<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = string(d)?;
    Ok(if s.is_empty() { "TAG".to_owned() } else { s })
}

/// `null` -> an empty list; otherwise a list of `T`.
pub(crate) fn list<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

use serde::Deserialize as _;

/// A value that must be a JSON object. serde's derive also reads a struct from an array of its
/// fields (`[1]` as a `HeartbeatData` with client id "1"); Java's decoders do not, and neither
/// does this.
pub(crate) struct Object<T>(pub(crate) T);

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: serde::Deserialize<'de>> de::Visitor<'de> for V<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData)).map(Object)
    }
}

/// `null` -> an empty list; otherwise a list of JSON objects.
pub(crate) fn object_list<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    Ok(list::<D, Object<T>>(d)?.into_iter().map(|o| o.0).collect())
}

/// `null` -> an empty list; otherwise a list whose items are integers, possibly as strings.
pub(crate) fn i32_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<i32>, D::Error> {
    #[derive(serde::Deserialize)]
    struct Item(#[serde(deserialize_with = "i64")] i64);
    list::<D, Item>(d)?
        .into_iter()
        .map(|Item(v)| {
            i32::try_from(v).map_err(|_| de::Error::custom(format!("{v} is out of the int range")))
        })
        .collect()
}

/// `null` -> an empty list; otherwise a list of strings (numbers accepted and stringified).
pub(crate) fn string_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(serde::Deserialize)]
    struct Item(#[serde(deserialize_with = "string")] String);
    Ok(list::<D, Item>(d)?.into_iter().map(|Item(s)| s).collect())
}

/// Declares a Java enum that (de)serializes by its Java name, and also deserializes from its
/// ordinal (variants must be listed in Java declaration order) or `null` (the given default).
macro_rules! java_enum {
    ($(#[$doc:meta])* $name:ident default $def:ident { $($(#[$vdoc:meta])* $variant:ident = $java:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl Default for $name {
            fn default() -> Self {
                $name::$def
            }
        }

        impl $name {
            const ALL: &'static [($name, &'static str)] = &[$(($name::$variant, $java)),+];

            /// The Java constant's name.
            pub fn as_java(self) -> &'static str {
                Self::ALL.iter().find(|(v, _)| *v == self).map(|(_, n)| *n).unwrap_or("")
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_java())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> serde::de::Visitor<'de> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(f, "a {} name or ordinal", stringify!($name))
                    }
                    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<$name, E> {
                        $name::ALL
                            .iter()
                            .find(|(_, n)| *n == v)
                            .map(|(e, _)| *e)
                            .ok_or_else(|| E::custom(format!("unknown {} {v:?}", stringify!($name))))
                    }
                    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<$name, E> {
                        usize::try_from(v)
                            .ok()
                            .and_then(|i| $name::ALL.get(i))
                            .map(|(e, _)| *e)
                            .ok_or_else(|| E::custom(format!("{} ordinal {v} out of range", stringify!($name))))
                    }
                    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<$name, E> {
                        u64::try_from(v)
                            .map_err(|_| E::custom(format!("negative {} ordinal {v}", stringify!($name))))
                            .and_then(|v| self.visit_u64(v))
                    }
                    fn visit_unit<E: serde::de::Error>(self) -> Result<$name, E> {
                        Ok($name::default())
                    }
                }
                d.deserialize_any(V)
            }
        }
    };
}
pub(crate) use java_enum;
