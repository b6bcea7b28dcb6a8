//! Strict JSON: the values that are valid JSON *text* but that no reader can decode.
//!
//! Collect and catalog bodies keep their free-form objects (`client`, `context`, `props`,
//! `metadata`) as raw JSON and the event log stores them verbatim. serde_json steps over a raw
//! value without decoding it, so two kinds of value pass that pass yet make every later reader
//! of the line fail: numbers beyond `f64` (`1e400`, `-1e400`: "number out of range") and
//! escapes of lone UTF-16 surrogates (`"\ud800"`: not a Unicode character). [`scan`] finds both
//! anywhere in a document, with the JSON path of each, in one pass over the bytes.
//!
//! The scan judges only what the strict reader would refuse; syntax is serde_json's job, so on
//! a syntax error (or nesting deeper than serde_json accepts) the scan stops and reports what
//! it found before that point.

use std::fmt;

/// serde_json's own nesting limit: deeper documents fail to parse anyway.
const MAX_DEPTH: usize = 128;

/// Integer digits beyond which a number without an exponent may exceed `f64::MAX` (≈1.8e308).
const SAFE_INT_DIGITS: usize = 308;

/// What makes a value unreadable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flaw {
    /// A number outside the range of `f64` (`1e400`): readers refuse it.
    NonFinite,
    /// A `\uD800`–`\uDFFF` escape without its pair: not a Unicode character.
    LoneSurrogate,
}

impl Flaw {
    /// The problem in plain words, as an API error states it.
    pub fn problem(self) -> &'static str {
        match self {
            Self::NonFinite => "is a number out of range (not a finite 64-bit float, like 1e400)",
            Self::LoneSurrogate => {
                "contains a lone UTF-16 surrogate escape (\\ud800-\\udfff without its pair), \
                 which is not a Unicode character"
            }
        }
    }
}

/// The JSON path of a flawed value, rendered as the API errors write paths
/// (`events[3].props.value`) by its [`fmt::Display`].
#[derive(Debug)]
pub struct JsonPath<'s, 'a>(&'s [Segment<'a>]);

#[derive(Debug, Clone, Copy)]
enum Segment<'a> {
    /// An object key as written (escapes undecoded; decoded when rendered).
    Key(&'a str),
    Index(usize),
}

impl fmt::Display for JsonPath<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, seg) in self.0.iter().enumerate() {
            match seg {
                Segment::Index(i) => write!(f, "[{i}]")?,
                Segment::Key(raw) => {
                    if n > 0 {
                        f.write_str(".")?;
                    }
                    if raw.contains('\\') {
                        // A key with escapes is shown decoded, or as written when it is itself
                        // the lone surrogate.
                        match serde_json::from_str::<String>(&format!("\"{raw}\"")) {
                            Ok(k) => f.write_str(&k)?,
                            Err(_) => f.write_str(raw)?,
                        }
                    } else {
                        f.write_str(raw)?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Scans a JSON document and calls `on_flaw` with the path and kind of every unreadable value
/// (at most one report per string or number).
pub fn scan(text: &str, mut on_flaw: impl FnMut(&JsonPath<'_, '_>, Flaw)) {
    let mut s = Scanner {
        text,
        b: text.as_bytes(),
        i: 0,
        path: Vec::new(),
        on_flaw: &mut on_flaw,
    };
    // Err means a syntax error or too deep: serde_json reports those.
    let _ = s.value(0);
}

/// Why a scan stopped early (details are left to serde_json's error).
struct Stop;

struct Scanner<'a, 'f> {
    text: &'a str,
    b: &'a [u8],
    i: usize,
    path: Vec<Segment<'a>>,
    on_flaw: &'f mut dyn FnMut(&JsonPath<'_, '_>, Flaw),
}

impl<'a> Scanner<'a, '_> {
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    fn flaw(&mut self, flaw: Flaw) {
        (self.on_flaw)(&JsonPath(&self.path), flaw);
    }

    fn expect(&mut self, byte: u8) -> Result<(), Stop> {
        if self.b.get(self.i) == Some(&byte) {
            self.i += 1;
            Ok(())
        } else {
            Err(Stop)
        }
    }

    fn value(&mut self, depth: usize) -> Result<(), Stop> {
        if depth > MAX_DEPTH {
            return Err(Stop);
        }
        self.ws();
        match self.b.get(self.i).ok_or(Stop)? {
            b'{' => self.object(depth),
            b'[' => self.array(depth),
            b'"' => {
                let (_, lone) = self.string()?;
                if lone {
                    self.flaw(Flaw::LoneSurrogate);
                }
                Ok(())
            }
            b'-' | b'0'..=b'9' => self.number(),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => Err(Stop),
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), Stop> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err(Stop)
        }
    }

    fn object(&mut self, depth: usize) -> Result<(), Stop> {
        self.i += 1;
        self.ws();
        if self.b.get(self.i) == Some(&b'}') {
            self.i += 1;
            return Ok(());
        }
        loop {
            self.ws();
            if self.b.get(self.i) != Some(&b'"') {
                return Err(Stop);
            }
            let (key, lone) = self.string()?;
            self.path.push(Segment::Key(key));
            if lone {
                self.flaw(Flaw::LoneSurrogate);
            }
            self.ws();
            self.expect(b':')?;
            self.value(depth + 1)?;
            self.path.pop();
            self.ws();
            match self.b.get(self.i) {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return Err(Stop),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<(), Stop> {
        self.i += 1;
        self.ws();
        if self.b.get(self.i) == Some(&b']') {
            self.i += 1;
            return Ok(());
        }
        let mut index = 0;
        loop {
            self.path.push(Segment::Index(index));
            self.value(depth + 1)?;
            self.path.pop();
            self.ws();
            match self.b.get(self.i) {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return Err(Stop),
            }
            index += 1;
        }
    }

    /// A string at `self.i` (the opening quote): its raw content and whether it holds a lone
    /// surrogate escape.
    fn string(&mut self) -> Result<(&'a str, bool), Stop> {
        self.i += 1;
        let start = self.i;
        let mut lone = false;
        loop {
            // Only quotes and backslashes matter; multi-byte UTF-8 never contains either byte.
            let rest = &self.b[self.i..];
            let at = rest
                .iter()
                .position(|&c| c == b'"' || c == b'\\')
                .ok_or(Stop)?;
            self.i += at;
            if self.b[self.i] == b'"' {
                let raw = &self.text[start..self.i];
                self.i += 1;
                return Ok((raw, lone));
            }
            // A backslash: `\uXXXX` needs a look, any other escape is one byte.
            match self.b.get(self.i + 1).ok_or(Stop)? {
                b'u' => {
                    let cp = self.hex4(self.i + 2)?;
                    self.i += 6;
                    if (0xD800..0xDC00).contains(&cp) {
                        let paired = self.b.get(self.i..self.i + 2) == Some(b"\\u")
                            && self
                                .hex4(self.i + 2)
                                .is_ok_and(|lo| (0xDC00..0xE000).contains(&lo));
                        if paired {
                            self.i += 6;
                        } else {
                            lone = true;
                        }
                    } else if (0xDC00..0xE000).contains(&cp) {
                        lone = true;
                    }
                }
                _ => self.i += 2,
            }
        }
    }

    fn hex4(&self, at: usize) -> Result<u32, Stop> {
        let digits = self.b.get(at..at + 4).ok_or(Stop)?;
        let digits = std::str::from_utf8(digits).map_err(|_| Stop)?;
        u32::from_str_radix(digits, 16).map_err(|_| Stop)
    }

    fn number(&mut self) -> Result<(), Stop> {
        let start = self.i;
        if self.b[self.i] == b'-' {
            self.i += 1;
        }
        let int_start = self.i;
        self.digits();
        let int_digits = self.i - int_start;
        if self.b.get(self.i) == Some(&b'.') {
            self.i += 1;
            self.digits();
        }
        let mut exponent = false;
        if let Some(b'e' | b'E') = self.b.get(self.i) {
            exponent = true;
            self.i += 1;
            if let Some(b'+' | b'-') = self.b.get(self.i) {
                self.i += 1;
            }
            self.digits();
        }
        if int_digits == 0 {
            return Err(Stop);
        }
        if exponent || int_digits > SAFE_INT_DIGITS {
            // Judged by serde_json itself, so the verdict is exactly the readers'.
            if serde_json::from_str::<f64>(&self.text[start..self.i]).is_err() {
                self.flaw(Flaw::NonFinite);
            }
        }
        Ok(())
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.b.get(self.i) {
            self.i += 1;
        }
    }
}

/// The flaws of a document as `(path, flaw)`, in document order.
pub fn flaws(text: &str) -> Vec<(String, Flaw)> {
    let mut out = Vec::new();
    scan(text, |path, flaw| out.push((path.to_string(), flaw)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_range_numbers_are_found_with_their_path() {
        // GIVEN numbers beyond f64 in nested objects and arrays
        let doc = r#"{"a": 1e400, "b": {"c": [1, -1e400]}, "d": 1.5e308, "e": 1e-400}"#;
        // WHEN scanned THEN exactly the two infinite ones are named
        assert_eq!(
            flaws(doc),
            vec![
                ("a".to_string(), Flaw::NonFinite),
                ("b.c[1]".to_string(), Flaw::NonFinite)
            ]
        );
        // and the readers agree: serde_json refuses the value, accepts the others
        assert!(serde_json::from_str::<serde_json::Value>("1e400").is_err());
        assert!(serde_json::from_str::<serde_json::Value>("1e-400").is_ok());
        // an integer of 400 digits is just as infinite
        let long = format!("{{\"n\": {}}}", "9".repeat(400));
        assert_eq!(flaws(&long), vec![("n".to_string(), Flaw::NonFinite)]);
        assert!(flaws(&format!("{{\"n\": {}}}", "9".repeat(300))).is_empty());
    }

    #[test]
    fn lone_surrogates_are_found_and_pairs_are_not() {
        let doc = r#"{"ok": "\ud83d\ude00", "hi": "x\ud800", "lo": ["\udc00"], "\ud800": 1}"#;
        assert_eq!(
            flaws(doc),
            vec![
                ("hi".to_string(), Flaw::LoneSurrogate),
                ("lo[0]".to_string(), Flaw::LoneSurrogate),
                ("\\ud800".to_string(), Flaw::LoneSurrogate),
            ]
        );
        // a high surrogate followed by another high one is lone too
        assert_eq!(flaws(r#"["\ud800\ud800"]"#).len(), 1);
        // escaped quotes and backslashes do not confuse the scan
        assert!(flaws(r#"{"a\"b": "c\\", "d": "\\ud800"}"#).is_empty());
    }

    #[test]
    fn keys_with_escapes_are_shown_decoded() {
        assert_eq!(flaws(r#"{"a\u0062": 1e999}"#)[0].0, "ab");
    }

    #[test]
    fn syntax_errors_stop_the_scan_quietly() {
        for doc in ["{", "[1e400", "{\"a\" 1}", "nul", "\"\\u12", "-", "[1,]"] {
            let _ = flaws(doc);
        }
        // what was found before the error is kept
        assert_eq!(flaws("[1e400, }").len(), 1);
        // nesting beyond serde_json's limit stops rather than recursing
        let deep = "[".repeat(100_000);
        assert!(flaws(&deep).is_empty());
    }
}
