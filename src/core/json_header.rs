//! A fast path for the remoting JSON header in the shape every client sends: one flat object,
//! integers as integers, strings, `extFields` an object of strings.
//!
//! It is not a JSON parser: anything outside that shape (a float, a nested value, a known key
//! twice, a number out of range, a `null` where a number goes, an escape it does not know) gives
//! `None`, and the caller
//! decodes the header with serde_json (`remoting::decode_json_header`), which defines the
//! result. Where this path answers, it answers exactly as that one would (checked by the unit
//! tests below and by the remoting fuzz property on every input).

use super::remoting::{self, ExtFields, LanguageCode};
use std::borrow::Cow;

/// The header's fields: what both paths read (serde's by these attributes).
#[derive(Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct Fields {
    #[serde(deserialize_with = "remoting::int")]
    pub(crate) code: i32,
    #[serde(deserialize_with = "remoting::language")]
    pub(crate) language: LanguageCode,
    #[serde(deserialize_with = "remoting::int")]
    pub(crate) version: i32,
    #[serde(deserialize_with = "remoting::int")]
    pub(crate) opaque: i32,
    #[serde(deserialize_with = "remoting::int")]
    pub(crate) flag: i32,
    #[serde(deserialize_with = "remoting::opt_string")]
    pub(crate) remark: Option<String>,
    #[serde(deserialize_with = "remoting::ext_fields")]
    pub(crate) ext_fields: ExtFields,
}

/// The header's fields, or `None` if it is not in the common shape (then serde_json decides).
pub(crate) fn parse(header: &[u8]) -> Option<Fields> {
    // One UTF-8 check for the whole header; strings are then sliced from it without another.
    let text = std::str::from_utf8(header).ok()?;
    let mut p = Parser {
        s: text.as_bytes(),
        text,
        i: 0,
    };
    let mut out = Fields::default();
    let mut seen = 0u8;
    p.ws();
    p.eat(b'{')?;
    p.ws();
    if !p.peek_is(b'}') {
        loop {
            let key = p.string()?;
            p.ws();
            p.eat(b':')?;
            p.ws();
            let key: &str = &key;
            let bit = match key {
                "code" => 1,
                "language" => 2,
                "version" => 4,
                "opaque" => 8,
                "flag" => 16,
                "remark" => 32,
                "extFields" => 64,
                _ => 0,
            };
            if bit != 0 {
                // serde rejects a known field given twice.
                if seen & bit != 0 {
                    return None;
                }
                seen |= bit;
            }
            match key {
                "code" => out.code = p.int()?,
                "version" => out.version = p.int()?,
                "opaque" => out.opaque = p.int()?,
                "flag" => out.flag = p.int()?,
                "language" => out.language = remoting::language_named(&p.string()?),
                "remark" => {
                    out.remark = if p.null() {
                        None
                    } else {
                        Some(p.string()?.into_owned())
                    }
                }
                "extFields" => {
                    if !p.null() {
                        // The rest of the header bounds the fields' unescaped text: one
                        // allocation for all of them (a send's header has 13).
                        out.ext_fields = ExtFields::with_capacity(16, p.s.len() - p.i);
                        p.ext_fields(&mut out.ext_fields)?;
                    }
                }
                // Ignored, as serde ignores unknown fields: only a scalar is skipped here.
                _ => p.skip_scalar()?,
            }
            p.ws();
            if p.peek_is(b',') {
                p.i += 1;
                p.ws();
                continue;
            }
            break;
        }
    }
    p.eat(b'}')?;
    p.ws();
    (p.i == p.s.len()).then_some(out)
}

struct Parser<'a> {
    s: &'a [u8],
    text: &'a str,
    i: usize,
}

impl<'a> Parser<'a> {
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.s.get(self.i) {
            self.i += 1;
        }
    }

    fn peek_is(&self, b: u8) -> bool {
        self.s.get(self.i) == Some(&b)
    }

    fn eat(&mut self, b: u8) -> Option<()> {
        self.peek_is(b).then(|| self.i += 1)
    }

    fn null(&mut self) -> bool {
        let null = self.s[self.i..].starts_with(b"null");
        if null {
            self.i += 4;
        }
        null
    }

    /// A string: borrowed if it has no escape. A raw control character, an unknown escape or a
    /// surrogate that is not half of a pair gives `None` (serde refuses those too).
    fn string(&mut self) -> Option<Cow<'a, str>> {
        let at = self.i;
        self.eat(b'"')?;
        let start = self.i;
        let len = self.s[start..]
            .iter()
            .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
        if self.s[start + len] == b'"' {
            self.i = start + len + 1;
            // Both ends are ASCII bytes, so they are char boundaries.
            return Some(Cow::Borrowed(&self.text[start..start + len]));
        }
        self.i = at;
        let mut owned = String::with_capacity(len + 16);
        self.string_to(&mut owned)?;
        Some(Cow::Owned(owned))
    }

    /// A string, unescaped onto the end of `out` (what [`string`](Self::string) refuses, this
    /// refuses, leaving `out` partly written).
    fn string_to(&mut self, out: &mut String) -> Option<()> {
        self.eat(b'"')?;
        let mut end = self.i;
        loop {
            match *self.s.get(end)? {
                b'"' => {
                    self.i = end + 1;
                    return Some(());
                }
                b'\\' => {
                    let escaped = *self.s.get(end + 1)?;
                    end += 2;
                    match escaped {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let unit = self.hex4(end)?;
                            end += 4;
                            let c = match unit {
                                0xD800..=0xDBFF => {
                                    if self.s.get(end..end + 2)? != b"\\u" {
                                        return None;
                                    }
                                    let low = self.hex4(end + 2)?;
                                    if !(0xDC00..=0xDFFF).contains(&low) {
                                        return None;
                                    }
                                    end += 6;
                                    0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
                                }
                                0xDC00..=0xDFFF => return None,
                                _ => unit,
                            };
                            out.push(char::from_u32(c)?);
                        }
                        _ => return None,
                    }
                }
                b if b < 0x20 => return None,
                _ => {
                    // A run up to the next quote, escape or control byte: those are ASCII, so
                    // the run ends on a char boundary.
                    let run = self.s[end..]
                        .iter()
                        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
                    out.push_str(&self.text[end..end + run]);
                    end += run;
                }
            }
        }
    }

    /// Four hex digits at `at`.
    fn hex4(&self, at: usize) -> Option<u32> {
        let digits = self.s.get(at..at + 4)?;
        digits.iter().try_fold(0u32, |n, &d| {
            let v = (d as char).to_digit(16)?;
            Some(n * 16 + v)
        })
    }

    /// A JSON integer in the `int` range.
    fn int(&mut self) -> Option<i32> {
        self.integer()?.parse().ok()
    }

    /// The text of a JSON integer of any length (no fraction, exponent or leading zero).
    fn integer(&mut self) -> Option<&'a str> {
        let start = self.i;
        if self.peek_is(b'-') {
            self.i += 1;
        }
        let digits = self.i;
        while self.s.get(self.i).is_some_and(u8::is_ascii_digit) {
            self.i += 1;
        }
        let n = self.i - digits;
        let leading_zero = n > 1 && self.s[digits] == b'0';
        let fraction = matches!(self.s.get(self.i), Some(b'.' | b'e' | b'E'));
        (n > 0 && !leading_zero && !fraction).then(|| &self.text[start..self.i])
    }

    /// `{"k":"v",...}`; a `null` value removes the key, as serde's path does. Keys and values
    /// are unescaped straight into `out`'s text, so no field allocates.
    fn ext_fields(&mut self, out: &mut ExtFields) -> Option<()> {
        self.eat(b'{')?;
        self.ws();
        if self.eat(b'}').is_some() {
            return Some(());
        }
        loop {
            let start = out.text_mut().len();
            self.string_to(out.text_mut())?;
            let mid = out.text_mut().len();
            self.ws();
            self.eat(b':')?;
            self.ws();
            if self.null() {
                let key = out.text_mut().split_off(start);
                out.remove(&key);
            } else {
                self.string_to(out.text_mut())?;
                out.place(start, mid);
            }
            self.ws();
            match self.s.get(self.i) {
                Some(b',') => {
                    self.i += 1;
                    self.ws();
                }
                Some(b'}') => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// The value of a key serde ignores: a string, an integer, `true`, `false` or `null`.
    fn skip_scalar(&mut self) -> Option<()> {
        match self.s.get(self.i)? {
            b'"' => self.string().map(drop),
            // Any integer, however long (serde ignores it unparsed).
            b'-' | b'0'..=b'9' => self.integer().map(drop),
            _ if self.null() => Some(()),
            _ => {
                for word in [&b"true"[..], b"false"] {
                    if self.s[self.i..].starts_with(word) {
                        self.i += word.len();
                        return Some(());
                    }
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::remoting::{RemotingCommand, decode_json_header_serde};

    /// Where the fast path answers, serde's path answers the same; where it declines, serde's
    /// path still decides (these inputs cover both).
    #[test]
    fn agrees_with_serde_where_it_answers() {
        let cases: &[&str] = &[
            r#"{"code":34,"flag":0,"language":"JAVA","opaque":7,"serializeTypeCurrentRPC":"JSON","version":453}"#,
            r#"{"code":310,"extFields":{"a":"1","b":"two","a":"3"},"flag":0,"language":"CPP","opaque":-2147483648,"version":0}"#,
            r#" { "code" : 10 , "extFields" : { "k" : null , "x" : "y" } , "remark" : null } "#,
            r#"{"code":0,"remark":"a remark","extFields":null,"unknown":true,"other":-12,"z":null,"f":false}"#,
            r#"{}"#,
            r#"{"language":"","code":1}"#,
            r#"{"language":"3"}"#,
            r#"{"language":"NOPE"}"#,
            r#"{"code":2147483648}"#,
            r#"{"code":01}"#,
            r#"{"code":1.0}"#,
            r#"{"code":1e3}"#,
            r#"{"code":"12"}"#,
            r#"{"code":null}"#,
            r#"{"code":1,"code":2}"#,
            r#"{"remark":"esc\"aped \\ \/ \b\f\n\r\t \u0001\u0002 \u00e9 \ud83d\ude00"}"#,
            r#"{"extFields":{"p\u0001":"a\u0001b\u0002c","UNIQ_KEY":"x"}}"#,
            r#"{"remark":"\ud83d"}"#,
            r#"{"remark":"\ude00"}"#,
            r#"{"remark":"\ud83d\u0041"}"#,
            r#"{"remark":"\x"}"#,
            r#"{"remark":"\u12"}"#,
            r#"{"remark":"\u12G4"}"#,
            r#"{"extFields":{"k":1}}"#,
            r#"{"unknown":{"nested":1}}"#,
            r#"{"unknown":[1]}"#,
            r#"{"unknown":1.5}"#,
            r#"{"code":1,}"#,
            r#"{"code":1} x"#,
            r#"{"code":1"#,
            r#"{"code":-}"#,
            r#"{"language":4}"#,
            r#"{"extFields":{"k":"v",}}"#,
            "{\"remark\":\"tab\there\"}",
            "{\"remark\":\"caf\u{e9}\"}",
        ];
        let mut answered = 0;
        for case in cases {
            if let Some(fast) = parse(case.as_bytes()) {
                answered += 1;
                let slow = decode_json_header_serde(case.as_bytes())
                    .unwrap_or_else(|e| panic!("{case}: fast path answered, serde failed: {e}"));
                let fast = RemotingCommand::from_header_fields(fast);
                assert_eq!(fast, slow, "{case}");
            }
        }
        assert_eq!(answered, 11, "the common shapes take the fast path");
    }
}
